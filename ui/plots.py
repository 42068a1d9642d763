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
