"""The project's import graph by layer: cycles and upward arrows, as text and Mermaid.

    python scripts/import_graph.py [ROOT] [--mermaid]

Reads every module under composer/ and ui/ (and app.py) with `ast`, function-level
imports included, and folds modules into the layers of docs/architecture.md. An
arrow is upward when a module imports one of a higher layer. Exits 1 if there is an
upward arrow or an import cycle.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

# Bottom to top. The first matching prefix names a module's layer.
LAYERS = [
    # The operators' registry is part of the recipe's vocabulary (names, NOT rows, verdicts).
    ("schema", ("composer.knobs", "composer.operators", "composer.recipe", "composer.sweep",
                "composer.pictures", "composer.lru")),
    ("worlds", ("composer.shapes.data", "composer.shapes.model", "composer.shapes.judge",
                "composer.shapes.exact", "composer.toy2d.data", "composer.toy2d.net",
                "composer.toy2d.lab", "composer.shapes", "composer.toy2d")),
    ("adapters", ("composer.models",)),
    ("samplers", ("composer.samplers", "composer.tracking")),
    ("engine", ("composer.engine", "composer.plan", "composer.maps", "composer.lift")),
    ("facade", ("composer.facade", "composer.media", "composer.evaluation")),
    # The facade's interface on a Ray cluster's engines; the CLI and the page choose it.
    ("cluster", ("composer.cluster",)),
    ("tools", ("composer.__main__", "composer.shapes.train", "composer.toy2d.train")),
    ("ui", ("ui",)),
    ("app", ("app",)),
]


def layer_of(module: str) -> int:
    best, length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    return best


def modules(root: Path) -> dict[str, Path]:
    found = {"app": root / "app.py"} if (root / "app.py").exists() else {}
    for package in ("composer", "ui"):
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in ("composer", "ui"):     # the packages themselves: no arrow
                out.add(name)
    return out


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    root = Path(next((a for a in argv if not a.startswith("--")), ".")).resolve()
    found = modules(root)
    edges = {m: imports(p, set(found)) - {m} for m, p in found.items()}
    # A package's __init__ re-exporting its modules is not an arrow of its own.
    edges = {m: {d for d in ds if not d.startswith(m + ".")} for m, ds in edges.items()}
    upward = sorted((m, d) for m, ds in edges.items() for d in ds if layer_of(d) > layer_of(m))
    loops = cycles(edges)
    between = sorted({(layer_of(m), layer_of(d)) for m, ds in edges.items() for d in ds
                      if layer_of(m) != layer_of(d)})
    if "--mermaid" in argv:
        print("```mermaid\nflowchart BT")
        for i, (name, _) in enumerate(LAYERS):
            print(f'  L{i}["{name}"]')
        for a, b in between:
            print(f"  L{a} --> L{b}" if a > b else f"  L{a} -. upward .-> L{b}")
        print("```")
    print(f"{len(found)} modules, {sum(map(len, edges.values()))} imports; "
          f"{len(loops)} cycle(s), {len(upward)} upward arrow(s)")
    for loop in loops:
        print("cycle:", " <-> ".join(loop))
    for m, d in upward:
        print(f"upward: {m} ({LAYERS[layer_of(m)][0]}) imports {d} ({LAYERS[layer_of(d)][0]})")
    return 1 if loops or upward else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
