"""What the page says: labels, summaries, progress, errors, and the API's yes/no."""
from __future__ import annotations

from composer.recipe import RecipeError, echo

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
