"""A run's levels as an inline SVG chart: MCMC acceptance and step size, each concept's
tracked log-density and smc's ESS, stacked over one shared axis of noise levels, with
tick labels and a key (a picture the Runs tab, Compare and the progress line can hold)."""
from __future__ import annotations

import math
from dataclasses import dataclass

ACCEPTANCE_COLOUR, STEP_COLOUR = "#2563eb", "#f97316"
# One colour per concept row (the tracked log-densities), then the ESS in grey.
ROW_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
ESS_COLOUR = "#64748b"
LEFT, RIGHT, TOP, GAP, BOTTOM = 40, 6, 4, 8, 26     # margins (px): tick labels left and below
DOMINANT = 100      # a tracked value this many times the 90th percentile: beyond the axis
FONT = "font-family='sans-serif' font-size='10' fill='#334155'"


@dataclass(frozen=True)
class Line:
    values: list[float | None]      # one per level; None where it has no value
    low: float                      # the panel's scale for this line
    high: float
    colour: str
    name: str                       # its entry in the key
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    lines: list[Line]
    ticks: tuple[str, str]          # the y axis' labels, bottom and top
    note: str = ""                  # said after the key (what the axis leaves out)


def mcmc_panel(step_sizes: list[float | None], acceptance: list[float | None]) -> Panel | None:
    """Acceptance on 0-100 % and the step size (a fraction of σ_t, log scale between its
    smallest and largest; its range in the key); None without MCMC moves."""
    steps = [h for h in step_sizes if h is not None]
    if not steps:
        return None
    logs = [None if h is None else math.log(max(h, 1e-12)) for h in step_sizes]
    kept = [v for v in logs if v is not None]
    lines = [Line(logs, min(kept), max(kept), STEP_COLOUR,
                  f"step size {min(steps):.3g}–{max(steps):.3g} × σ_t (log scale)", dashed=True)]
    rates = [a for a in acceptance if a is not None]
    if rates:
        lines.insert(0, Line(list(acceptance), 0.0, 1.0, ACCEPTANCE_COLOUR,
                             f"acceptance (mean {sum(rates) / len(rates):.0%})"))
    return Panel("MCMC per level", lines, ("0 %", "100 %") if rates else ("", ""))


def tick(value: float) -> str:
    """A y label that fits the chart's left margin: +0.535, -1.61M (not -1.61e+06)."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("+∞" if value > 0 else "−∞")
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:+.3g}{suffix}"
    return f"{value:+.0e}" if 0 < abs(value) < 0.01 else f"{value:+.3g}"


def tracks_panel(log_density: list[tuple[float, ...]], ess: list[float | None],
                 names: list[str]) -> Panel | None:
    """Each concept's tracked log-density minus the concepts' mean (one shared scale, in
    nats) and smc's effective sample size / K (dashed, 0 to 1); None when untracked."""
    tracked = [v for v in log_density if v]
    kept = [e for e in ess if e is not None]
    if not tracked and not kept:
        return None
    lines, ticks, note = [], ("", ""), ""
    if tracked:
        every = [x for v in tracked for x in v]
        limit = axis_limit(every)
        inside = [x for x in every if abs(x) <= limit] or [0.0]    # none finite: an empty axis
        low, high = min(inside), max(inside)
        outside = [x for x in every if not abs(x) <= limit]
        if outside:          # a NOT row's last level, often: it would flatten the rest
            far = max((x for x in outside if not math.isnan(x)), key=abs, default=math.nan)
            note = f"{len(outside)} log q beyond the axis, drawn at its edge (up to {tick(far)})"
        for i, name in enumerate(names[:len(tracked[0])]):
            values = [None if not v or math.isnan(v[i]) else min(max(v[i], low), high)
                      for v in log_density]
            lines.append(Line(values, low, high, ROW_COLOURS[i % len(ROW_COLOURS)], f"log q: {name}"))
        ticks = (tick(low), tick(high))
    if kept:
        lines.append(Line(list(ess), 0.0, 1.0, ESS_COLOUR,
                          f"ESS/K {min(kept):.0%}–{max(kept):.0%} (0–1)", dashed=True))
        ticks = ticks if tracked else ("0", "1")
    return Panel("tracked log-density (nats, vs the mean)" if tracked else "ESS/K", lines, ticks, note)


def axis_limit(values: list[float]) -> float:
    """DOMINANT times the 90th percentile of the finite values' magnitudes (at least 1
    nat: a few nats apart is never far). The axis spans the values within it, so that a
    few far ones do not draw every other as a flat line."""
    finite = sorted(abs(v) for v in values if math.isfinite(v))
    return DOMINANT * max(finite[int(0.9 * (len(finite) - 1))] if finite else 0.0, 1.0)


def _polyline(line: Line, x, top: float, height: float) -> str:
    span = line.high - line.low or 1.0
    points = " ".join(f"{x(i):.1f},{top + height * (1 - (v - line.low) / span):.1f}"
                      for i, v in enumerate(line.values) if v is not None)
    dash = " stroke-dasharray='4 2'" if line.dashed else ""
    return (f"<polyline points='{points}' fill='none' stroke='{line.colour}' "
            f"stroke-width='1.6'{dash}/>")


def chart(panels: list[Panel | None], width: int = 320, height: int = 64) -> str:
    """The panels stacked over one axis of levels (1 on the left), each with its
    y labels and title, the levels ticked below, and a key; '' when there is none."""
    panels = [p for p in panels if p is not None]
    if not panels:
        return ""
    levels = max(len(line.values) for p in panels for line in p.lines)
    inner = width - LEFT - RIGHT
    total = TOP + len(panels) * (height + GAP) - GAP + BOTTOM

    def x(i: int) -> float:
        return LEFT + inner * i / max(levels - 1, 1)

    parts, key = [], []
    for n, panel in enumerate(panels):
        top = TOP + n * (height + GAP)
        parts.append(f"<rect x='{LEFT}' y='{top}' width='{inner}' height='{height}' "
                     f"fill='#f8fafc' stroke='#cbd5e1'/>"
                     f"<text x='{LEFT + 4}' y='{top + 11}' {FONT}>{panel.title}</text>"
                     f"<text x='{LEFT - 4}' y='{top + height}' text-anchor='end' {FONT}>"
                     f"{panel.ticks[0]}</text>"
                     f"<text x='{LEFT - 4}' y='{top + 9}' text-anchor='end' {FONT}>"
                     f"{panel.ticks[1]}</text>")
        parts.extend(_polyline(line, x, top, height) for line in panel.lines)
        key.extend(f"<span style='color:{line.colour}'>{'- -' if line.dashed else '■'} "
                   f"{line.name}</span>" for line in panel.lines)
        key.extend([f"<span>{panel.note}</span>"] if panel.note else [])
    axis = total - BOTTOM + 12
    middle = (levels + 1) // 2
    parts.extend(f"<text x='{x(i - 1):.1f}' y='{axis}' text-anchor='middle' {FONT}>{i}</text>"
                 for i in sorted({1, middle, levels}))
    parts.append(f"<text x='{LEFT + inner / 2:.1f}' y='{axis + 12}' text-anchor='middle' {FONT}>"
                 f"noise level (first to last)</text>")
    label = "; ".join(line.name for p in panels for line in p.lines) + f"; {levels} levels"
    return (f"<div class='levels-chart'><svg role='img' aria-label='{label}' width='{width}' "
            f"height='{total}' viewBox='0 0 {width} {total}' xmlns='http://www.w3.org/2000/svg'>"
            f"<title>{label}</title>{''.join(parts)}</svg>"
            f"<div class='levels-key'>{' · '.join(key)}</div></div>")


def run_chart(frames, names: list[str], width: int = 320, height: int = 64) -> str:
    """A run's chart from its frames (composer.facade.Frame): MCMC, then tracks."""
    return chart([mcmc_panel([f.step_size for f in frames], [f.acceptance for f in frames]),
                  tracks_panel([f.log_density for f in frames], [f.ess for f in frames], names)],
                 width, height)
