"""The markdown tables of benchmarks/methods.py."""
from __future__ import annotations


def _pct(value) -> str:
    return "" if value is None else f"{value:.0%}"


def toy2d_table(cells: list[dict]) -> str:
    rows = list(dict.fromkeys((c["model"], c["method"]) for c in cells))
    at = {(c["model"], c["method"], c["task"]): c for c in cells}
    lines = ["| model | method | product: in support / MMD | negation: in support / MMD | "
             "OR 1:3: in either / left share (exact 25%) | evaluations per sample |",
             "|---|---|---|---|---|---|"]
    for model, method in rows:
        cols, spent = [], []
        for task in ("product", "negation", "or"):
            c = at.get((model, method, task))
            if c is None:
                cols.append("—")
                continue
            spent.append(c["evaluations"])
            cols.append(f"{_pct(c['in_either'])} / {_pct(c['left_share'])}" if task == "or"
                        else f"{_pct(c['in_support'])} / {c['mmd']:.3f}")
        lines.append(f"| `{model}` | {method} | " + " | ".join(cols)
                     + f" | {', '.join(f'{e:,}' for e in dict.fromkeys(spent))} |")
    return "\n".join(lines)


def shapes_table(cells: list[dict]) -> str:
    rows = list(dict.fromkeys((c["model"], c["method"]) for c in cells))
    at = {(c["model"], c["method"], c["task"], c["family"]): c for c in cells}
    lines = ["| model | method | AND2 placed / free | AND3 placed / free | NOT placed / free | "
             "OR 1:3 free: strict / first share (exact 25%) | evaluations per sample |",
             "|---|---|---|---|---|---|---|"]
    for model, method in rows:
        cols, spent = [], []
        for task in ("and2", "and3", "not"):
            pair = [at.get((model, method, task, f)) for f in ("placed", "free")]
            spent += [c["evaluations"] for c in pair if c]
            cols.append(" / ".join(_pct(c["strict"]) if c else "—" for c in pair))
        c = at.get((model, method, "or", "free"))
        cols.append(f"{_pct(c['strict'])} / {_pct(c['first_share'])}" if c else "—")
        if c:
            spent.append(c["evaluations"])
        lines.append(f"| `{model}` | {method} | " + " | ".join(cols)
                     + f" | {', '.join(f'{e:,}' for e in dict.fromkeys(spent))} |")
    return "\n".join(lines)


def ito_table(cells: list[dict]) -> str:
    lines = ["| model | sampler | steps | median error at 10% / 50% / 90% of the run | "
             "at the end (exact median size) | end-of-run sign agrees |",
             "|---|---|---|---|---|---|"]
    for c in cells:
        errors = " / ".join(f"{v:.3g}" for v in c["median_error"].values())
        lines.append(f"| `{c['model']}` | {c['sampler']} | {c['steps']} | {errors} | "
                     f"{c['end_error']:.3g} ({c['end_exact_median']:.3g}) | {_pct(c['end_sign_agreement'])} |")
    return "\n".join(lines)


def cost_table(cells: list[dict]) -> str:
    lines = ["| method | steps | network rows per sample (2 concepts) |", "|---|---|---|"]
    lines += [f"| {c['method']} | {c['steps']} | {c['evaluations']:,} |" for c in cells]
    return "\n".join(lines)


def or_bias_table(cells: list[dict]) -> str:
    lines = ["| model | operator | DDPM steps | in either bar | left bar's share (exact 25%) |",
             "|---|---|---|---|---|"]
    lines += [f"| `{c['model']}` | {c['operator']} | {c['steps']} | {_pct(c['in_either'])} | "
              f"{c['left_share']:.1%} |" for c in cells]
    return "\n".join(lines)


def tables(cells: list[dict]) -> str:
    out = []
    for part, title, make in (("toy2d", "2D lab", toy2d_table), ("shapes", "Shapes, strict judge", shapes_table),
                              ("ito", "Ito density estimates against exact", ito_table),
                              ("cost", "Cost on a tiny random Stable Diffusion", cost_table),
                              ("or_bias", "Where the OR's share goes wrong", or_bias_table)):
        mine = [c for c in cells if c["part"] == part]
        if mine:
            out.append(f"#### {title}\n\n{make(mine)}\n")
    return "\n".join(out)
