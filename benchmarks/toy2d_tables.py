"""The 2D lab benchmark's report as markdown tables (benchmarks/toy2d.py)."""
from __future__ import annotations

from composer.toy2d.data import CONCEPTS


def markdown(report: dict) -> str:
    lines = ["| setup | model | sampler | MMD^2 | MMD | in support | seconds | acceptance |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        if "skipped" in r:
            lines.append(f"| {r['setup']} | {r['model']} | {r['sampler']} | skipped: "
                         f"{r['skipped']} | | | | |")
            continue
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        sec = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        lines.append(f"| {r['setup']} | {r['model']} | {r['sampler']} | {r['mmd2']:.4f} "
                     f"| {r['mmd']:.3f} | {r['support']:.3f} | {sec} | {acc} |")
    return "\n".join(lines)


def markdown_extra(report: dict) -> str:
    lines = ["| product, toy2d-energy | seed | MMD^2 | MMD | in support | acceptance |",
             "|---|---|---|---|---|---|"]
    for r in report["product_seeds"]:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['sampler']} | {r['seed']} | {r['mmd2']:.4f} | {r['mmd']:.3f} "
                     f"| {r['support']:.3f} | {acc} |")
    lines += ["", "| negation form | beta | sampler | MMD | in the hole | outside the big box "
                  "| in support | acceptance |", "|---|---|---|---|---|---|---|---|"]
    for r in report["negation_forms"]:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['form']} | {r['beta']:g} | {r['sampler']} | {r['mmd']:.3f} "
                     f"| {r['in_hole']:.3f} | {r['outside_big_box']:.3f} | {r['support']:.3f} "
                     f"| {acc} |")
    c = report["negation_choice"]
    lines += ["", f"Negation choice ({c['rule']}; {c['qualified']} runs qualify): form "
                  f"{c['form']}, beta {c['beta']:g}, {c['sampler']}: MMD {c['mmd']:.3f}, "
                  f"in the hole {c['in_hole']:.3f}, outside {c['outside_big_box']:.3f}"]
    lines += ["", "| model | " + " | ".join(CONCEPTS) + " |",
              "|---|" + "---|" * len(CONCEPTS)]
    for name, table in report["component_support"].items():
        lines.append(f"| {name} | " + " | ".join(f"{table[c]:.3f}" for c in CONCEPTS) + " |")
    lines += ["", "| setup | measure | value | target | met | run |", "|---|---|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['setup']} | {t['measure']} | {t['value']} | {t['target']} "
                     f"| {'yes' if t['met'] else 'no'} | {t['run']} |")
    b = report["product_budget"]
    lines += ["", f"Product, HMC on toy2d-energy; the model's own composed density at the last "
                  f"level has {b['model_ceiling_in_support']:.1%} of its mass in the support.", "",
              "| levels | HMC trajectories per level | evaluations per sample | MMD | in support "
              "| seconds |", "|---|---|---|---|---|---|"]
    for r in b["runs"]:
        lines.append(f"| {r['steps']} | {r['mcmc_steps']} | {r['evaluations_per_sample']} "
                     f"| {r['mmd']:.3f} | {r['support']:.3f} | {r['seconds']:.1f} |")
    lines += ["", markdown_default_product(report["default_product"])]
    return "\n".join(lines)


def markdown_default_product(d: dict) -> str:
    lines = [f"Default product run ({d['sampler']} on toy2d-energy, {d['steps']} levels, "
             f"{d['evaluations_per_sample']} evaluations per sample, 1000 samples):", "",
             "| seed | MMD | in support | seconds | CPU seconds | acceptance |",
             "|---|---|---|---|---|---|"]
    for r in d["runs"]:
        acc = "" if r["acceptance"] is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['seed']} | {r['mmd']:.3f} | {r['support']:.3f} | {r['seconds']:.1f} "
                     f"| {r['cpu_seconds']:.1f} | {acc} |")
    t, load = d["target"], d["load_average_1min"]
    lines += ["", f"In support: worst {d['support_min']:.3f}, mean {d['support_mean']:.3f} "
                  f"(target >= {t['support']}); seconds: fastest {d['seconds_min']}, median "
                  f"{d['seconds_median']}, CPU {d['cpu_seconds_min']} (target <= {t['seconds']}); "
                  f"1-minute load average {load['start']} at the start, {load['end']} at the end; "
                  f"target {'met' if d['met'] else 'not met'}"]
    return "\n".join(lines)
