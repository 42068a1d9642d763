"""A run's MCMC step size and acceptance per noise level, as a small inline SVG
(a picture the Runs table and Compare can hold in a cell or a line of text)."""
from __future__ import annotations

import math

PAD = 3
ACCEPTANCE_COLOUR, STEP_COLOUR = "#2563eb", "#f97316"


def _polyline(values: list[float], low: float, high: float, colour: str, width: int, height: int,
              dashed: bool = False) -> str:
    span = high - low or 1.0
    count = max(len(values) - 1, 1)
    points = " ".join(
        f"{PAD + (width - 2 * PAD) * i / count:.1f},"
        f"{height - PAD - (height - 2 * PAD) * (v - low) / span:.1f}"
        for i, v in enumerate(values))
    dash = " stroke-dasharray='3 2'" if dashed else ""
    return (f"<polyline points='{points}' fill='none' stroke='{colour}' stroke-width='1.6'"
            f"{dash}/>")


def levels_svg(step_sizes: list[float | None], acceptance: list[float | None], width: int = 168,
               height: int = 48) -> str:
    """Acceptance (blue, 0 to 100 %) and the step size (orange dashes, log scale between
    its smallest and largest) against the noise level, first level on the left; '' when
    the run made no MCMC moves. The step is a fraction of σ_t."""
    pairs = [(h, a) for h, a in zip(step_sizes, acceptance) if h is not None]
    if not pairs:
        return ""
    steps = [h for h, _ in pairs]
    rates = [a for _, a in pairs if a is not None]
    logs = [math.log(max(h, 1e-12)) for h in steps]
    title = (f"Step size {min(steps):.3g}–{max(steps):.3g} × σ_t over {len(steps)} levels"
             + (f"; acceptance {min(rates):.0%}–{max(rates):.0%}, mean "
                f"{sum(rates) / len(rates):.0%}" if rates else ""))
    lines = _polyline(logs, min(logs), max(logs), STEP_COLOUR, width, height, dashed=True)
    if rates:
        lines += _polyline(rates, 0.0, 1.0, ACCEPTANCE_COLOUR, width, height)
    return (f"<svg class='levels-plot' role='img' aria-label='{title}' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"
            f"<title>{title}</title><rect width='{width}' height='{height}' fill='#f8fafc' "
            f"stroke='#cbd5e1'/>{lines}</svg>")


# One colour per concept row (the tracked log-densities), then the ESS in grey.
ROW_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
ESS_COLOUR = "#64748b"


def tracks_svg(log_density: list[tuple[float, ...]], ess: list[float | None], names: list[str],
               width: int = 240, height: int = 84) -> str:
    """Per noise level (first on the left): each concept's tracked log-density minus the
    concepts' mean (solid, one colour per row, a shared scale whose range the title
    gives) and, for smc, the effective sample size / K (grey dashes, 0 to 1), with a
    key under the plot; '' when nothing was tracked."""
    tracked = [v for v in log_density if v]
    kept = [e for e in ess if e is not None]
    if not tracked and not kept:
        return ""
    lines, key, title = "", [], []
    if tracked:
        low = min(min(v) for v in tracked)
        high = max(max(v) for v in tracked)
        for i, name in enumerate(names[:len(tracked[0])]):
            colour = ROW_COLOURS[i % len(ROW_COLOURS)]
            lines += _polyline([v[i] for v in tracked], low, high, colour, width, height)
            key.append(f"<span style='color:{colour}'>■ {name}</span>")
        title.append(f"log-density per concept, relative to their mean: {low:.3g} to {high:.3g} nats")
    if kept:
        lines += _polyline(kept, 0.0, 1.0, ESS_COLOUR, width, height, dashed=True)
        key.append(f"<span style='color:{ESS_COLOUR}'>- - ESS/K {min(kept):.0%}–{max(kept):.0%}</span>")
        title.append(f"ESS/K from {min(kept):.0%} to {max(kept):.0%}")
    label = "; ".join(title) + f"; {max(len(tracked), len(kept))} levels"
    return (f"<div class='tracks-plot'><svg role='img' aria-label='{label}' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>"
            f"<title>{label}</title><rect width='{width}' height='{height}' fill='#f8fafc' "
            f"stroke='#cbd5e1'/>{lines}</svg><div class='tracks-key'>{' '.join(key)}</div></div>")
