"""What the page says: labels, summaries, progress, errors, and the API's yes/no."""
from __future__ import annotations

from composer.models.outputs import CONFLICT_COLOUR, CONFLICT_OPACITY
from composer.recipe import RecipeError, echo
from composer.toy2d.lab import DENSITY_COLOUR

FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False, "": False}


def flag(value, field: str) -> bool:
    """An API yes/no: a boolean, 0/1, or the text true/false/yes/no/on/off/1/0 (a
    non-empty string is not simply true: "false" means false)."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in FLAG_WORDS:
        return FLAG_WORDS[value.strip().lower()]
    raise RecipeError(f"{field}: must be true or false, got {echo(value)}")


def is_blank(text) -> bool:
    """No recipe text at all (the page found the form invalid and said why); anything
    else, JSON or not, goes to the recipe parser, which says what is wrong with it."""
    return text is None or (isinstance(text, str) and not text.strip())


def default_text(value) -> str:
    """A knob's default as the page says it: 'default 1.0', or per sampler
    'default 0.5 (ula), 0.3 (uhmc), 1.0 (mala, hmc)'."""
    if not isinstance(value, dict):
        return f"default {value}"
    groups: dict = {}
    for name, v in value.items():
        groups.setdefault(v, []).append(name)
    return "default " + ", ".join(f"{v} ({', '.join(names)})" for v, names in groups.items())


def model_label(name: str, description: str) -> str:
    """'shapes-exact · exact score, not learned': the picker's label."""
    return f"{name} · {description}" if description else name


def model_summary(info: dict) -> str:
    kind = "energy" if info["has_energy"] else "score"
    d = info["defaults"]
    defaults = ", ".join(f"{k} {default_text(v).removeprefix('default ')}" for k, v in d.items())
    what = f" ({info['description']})" if info.get("description") else ""
    text = f"**{info['name']}** loaded{what}: {info['family']} family, {kind} model"
    if info["choices"]:
        text += f"; concepts: {', '.join(info['choices'])}"
    if info["vocabulary"]:
        text += f"; vocabulary: {', '.join(info['vocabulary'])}"
    return text + (f". Defaults: {defaults}." if defaults else ".")


def concept_label(concept) -> str:
    if concept.negate:
        return f"NOT β={concept.beta:g} · {concept.text}"
    return f"AND w={concept.weight:g} · {concept.text}"


def progress_html(index: int, total: int, extra: str = "") -> str:
    pct = 100.0 * index / max(total, 1)
    return (f"<div id='progress-text'>Step {index} / {total}{extra}</div>"
            f"<div style='background:#ddd;height:8px;border-radius:4px'>"
            f"<div style='width:{pct:.1f}%;background:#f97316;height:8px;border-radius:4px'>"
            f"</div></div>")


def metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, (int, float)) else f"{k} = {v}"
                     for k, v in metrics.items())


def error_markdown(message: str) -> str:
    lines = [line for line in str(message).splitlines() if line.strip()]
    if len(lines) == 1:
        return f"<span class='error'>⚠ {lines[0]}</span>"
    return "<span class='error'>⚠ Cannot run this recipe:</span>\n\n" + "\n".join(
        f"- {line}" for line in lines)


def time_text(wall: float, sampling: float, verdicts: float, files: float) -> str:
    """'8.1 s (sampling 3.8 s · verdicts 2.9 s · files 0.9 s · page 0.5 s)': where the
    wait from start to done went; 'page' is the frames' way to the browser."""
    page = max(wall - sampling - verdicts - files, 0.0)
    parts = [("sampling", sampling), ("verdicts", verdicts), ("files", files), ("page", page)]
    return f"{wall:.1f} s (" + " · ".join(f"{name} {s:.1f} s" for name, s in parts
                                          if name == "sampling" or s >= 0.05) + ")"


def view_label(show_noisy: bool, showing_map: bool, density: bool, final: bool) -> str:
    """The big picture's label: what it shows, and over which levels."""
    if showing_map and density:
        return "Density p_t of the composition, with the samples x_t"
    if showing_map:
        return ("Conflict map, averaged over the run's levels" if final
                else "Conflict map at this level")
    return "x_t (noisy state)" if show_noisy and not final else "Predicted x₀"


def map_key(density: bool) -> str:
    """The colour key under a map."""
    def rgb(colour, opacity=1.0):
        return f"rgba({colour[0]},{colour[1]},{colour[2]},{opacity})"
    if density:
        scale, low, high = (f"linear-gradient(90deg, #fff, {rgb(DENSITY_COLOUR)})",
                            "0", "the level's peak density (each map scaled to its own)")
    else:
        scale, low, high = (f"linear-gradient(90deg, rgba(0,0,0,0), "
                            f"{rgb(CONFLICT_COLOUR, CONFLICT_OPACITY)})",
                            "0: the AND rows agree",
                            "1: they oppose (one AND row: where the NOT rows push hardest)")
    return (f"<div class='map-key'><span>{low}</span><span class='map-scale' "
            f"style='background:{scale}'></span><span>{high}</span></div>")
