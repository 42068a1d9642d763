"""Benchmark scripts that print JSON; run from the repository as `python -m benchmarks.<name>`."""

import json
import os


def write_report(report: dict, path: str | None) -> None:
    """The report as indented JSON at `path` (its folder made), when a path is given."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
