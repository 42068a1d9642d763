"""Command line: render a recipe, or run a sweep into a labelled grid.

    python -m composer render RECIPE --out DIR [--model NAME] [--device DEV]
                              [--best-of N] [--lift | --no-lift]
    python -m composer sweep SWEEP --out DIR [--device DEV | --cluster auto|ADDRESS]

render writes image_NN.png (each carrying the recipe), recipe.json with every
default filled in, and for toy2d samples.npy and scatter.png. --best-of N draws N
candidates per sample and keeps the one whose rows all hold by the model's own lift
(composer/lift.py; it is part of the recipe); --lift / --no-lift turn the lift
verdicts, printed per sample and written to lift.json, on or off (default: the
model's, off for Stable Diffusion). sweep (see
composer/sweep.py) prints its cost, runs every cell, and writes grid.png (the
labelled grid, carrying the sweep), sweep.json, cell_R_C.png per cell (carrying
that cell's recipe) and cells.json (each cell's recipe and metrics); with --cluster
its cells run on a Ray cluster's engines (composer/cluster.py, docs/scaling.md), and a
cell that fails is named while the others finish. Any failure (a bad or
unreadable recipe, a model that cannot load, an unusable device or output
folder) prints one line, `error: ...`, and exits with status 2; library
warnings are shown only with --verbose.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from composer.cluster import CellFailed, RemoteComposer
from composer.facade import Composer, ComposerError
from composer.media import SWEEP_CHUNK, labelled_grid, png_bytes, save_png, sweep_cell
from composer.operators import OPERATORS
from composer.recipe import MAX_RECIPE_BYTES, Recipe, RecipeError
from composer.sweep import Sweep

DEVICES = ("cpu", "cuda")


def read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_RECIPE_BYTES + 1)     # /dev/zero must not fill memory
    except OSError as err:
        raise RecipeError(f"{what}: cannot read {path} ({err.strerror})") from None


def device(name: str | None) -> torch.device | None:
    if name is None:
        return None
    if name.split(":")[0] not in DEVICES:
        raise ComposerError(f"--device: must be one of {', '.join(DEVICES)}, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComposerError("--device: cuda was asked for, but this machine has no CUDA device")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ComposerError(f"--device: not a device name: {name!r}") from None


def output_folder(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ComposerError(f"--out: cannot create the folder {path} ({err.strerror})") from None
    return out


@contextlib.contextmanager
def writing(path: str):
    try:
        yield
    except OSError as err:
        raise ComposerError(f"--out: cannot write into {path} ({err.strerror})") from None


def price(sampling: int, judging: int, limit: int | None, what: str) -> str:
    """'1,200 network evaluations (+ 300 for the lift verdicts); a run may use 10,000'."""
    verdicts = f" (+ {judging:,} for the lift verdicts)" if judging else ""
    allowed = f"; a {what} may use {limit:,}" if limit is not None else ""
    return f"{sampling:,} network evaluations{verdicts}{allowed}"


def render(args: argparse.Namespace) -> None:
    recipe = Recipe.from_json(read_bytes(args.recipe, "recipe"))
    if args.model:
        recipe = dataclasses.replace(recipe, model=args.model)
    if args.best_of is not None:
        recipe = dataclasses.replace(recipe, best_of=args.best_of)
    out = output_folder(args.out)
    composer = Composer(device(args.device))
    planned = composer.plan(recipe, lift=args.lift)
    print(f"render: {price(planned.sampling, planned.judging, planned.budget, 'run')}", flush=True)
    *_, result = composer.run(planned)
    with writing(args.out):
        (out / "recipe.json").write_text(result.recipe.to_json() + "\n")
        if result.points is not None:
            np.save(out / "samples.npy", result.points)
            save_png(result.images[0], result.recipe, out / "scatter.png")
        else:
            for i, image in enumerate(result.images):
                save_png(image, result.recipe, out / f"image_{i:02d}.png")
        if result.lift:
            (out / "lift.json").write_text(json.dumps(result.lift, indent=1) + "\n")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for name, value in result.metrics.items():
        print(f"{name}: {value:.4f}")
    if result.lift:
        holding = sum(v["holds"] for v in result.lift)
        words = OPERATORS[result.recipe.operator].verdict_words()
        print(f"by the model (lift): {holding} of {len(result.lift)} samples {words}")
    print(f"wrote {out}")


def sweep_engines(args: argparse.Namespace) -> Composer:
    """This process's Composer, or with --cluster a pool of engines on a Ray cluster."""
    if not args.cluster:
        return Composer(device(args.device))
    if args.device:
        raise ComposerError("--device: not with --cluster; each engine uses its own device "
                            "(its GPU, else the CPU)")
    return RemoteComposer(args.cluster, "--cluster")


def sweep(args: argparse.Namespace) -> None:
    plan = Sweep.from_json(read_bytes(args.sweep, "sweep"))
    out = output_folder(args.out)
    composer = sweep_engines(args)
    try:
        write_sweep(composer, plan, out, args.out)
    finally:
        if isinstance(composer, RemoteComposer):
            composer.close()


def write_sweep(composer: Composer, plan: Sweep, out: Path, where: str) -> None:
    rows, columns = plan.shape
    planned = composer.sweep_plan(plan)
    judging = sum(cell.judging for *_, cell in planned.cells)
    print(f"sweep: {rows * columns} cells, "
          f"{price(planned.total - judging, judging, planned.budget, 'sweep')}", flush=True)
    pictures, records, failed = [], [], []
    cells = composer.cells(planned) if isinstance(composer, RemoteComposer) else composer.sweep(planned)
    for cell in cells:
        if isinstance(cell, CellFailed):          # on a cluster the other cells go on
            failed.append(cell.name)
            print(f"{cell.name}: failed: {cell.error}", file=sys.stderr, flush=True)
            continue
        result, (i, j) = cell.result, cell.position
        picture, summary = sweep_cell(result.images, result.metrics)
        pictures.append(((i, j), picture, summary))
        records.append({"row": i, "column": j, "labels": list(cell.labels),
                        "recipe": result.recipe.to_dict(), "metrics": result.metrics})
        with writing(where):
            save_png(picture, result.recipe, out / f"cell_{i + 1}_{j + 1}.png")
        print(f"cell ({i + 1}, {j + 1}) {' · '.join(cell.labels)}: {summary or 'done'}", flush=True)
    picture = labelled_grid(pictures, *plan.labels())
    with writing(where):
        (out / "grid.png").write_bytes(png_bytes(picture, plan, SWEEP_CHUNK))
        (out / "sweep.json").write_text(plan.to_json() + "\n")
        (out / "cells.json").write_text(json.dumps(records, indent=2) + "\n")
    if failed:
        raise ComposerError(f"{len(failed)} of {rows * columns} cells failed ({', '.join(failed)}); "
                            f"{out} has the others")
    print(f"wrote {out}")


@contextlib.contextmanager
def quiet_libraries(quiet: bool):
    """Keep library chatter (deprecations, hub notices) off the user's terminal:
    diffusers, transformers and huggingface_hub speak through these two."""
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show library warnings")
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="render a recipe JSON file")
    render_cmd.add_argument("recipe")
    render_cmd.add_argument("--out", required=True, help="output folder")
    render_cmd.add_argument("--model", help="override the recipe's model (name, hub id or folder)")
    render_cmd.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    render_cmd.add_argument("--best-of", type=int, metavar="N",
                            help="N candidates per sample, the one the model's lift prefers kept")
    render_cmd.add_argument("--lift", action=argparse.BooleanOptionalAction, default=None,
                            help="judge the samples by the model's own lift (default: the model's)")
    sweep_cmd = commands.add_parser("sweep", help="run a sweep JSON file into a labelled grid")
    sweep_cmd.add_argument("sweep")
    sweep_cmd.add_argument("--out", required=True, help="output folder")
    sweep_cmd.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    sweep_cmd.add_argument("--cluster", metavar="auto|ADDRESS",
                           help="run the cells on a Ray cluster: auto (RAY_ADDRESS, a running "
                                "`ray start`, else a local one), HOST:PORT or ray://HOST:PORT")
    args = parser.parse_args(argv)
    with quiet_libraries(not args.verbose):
        try:
            {"render": render, "sweep": sweep}[args.command](args)
        except (RecipeError, ComposerError) as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            if getattr(err, "detail", ""):          # what was found: this is the server's own user
                print(f"  found: {' '.join(err.detail.split())}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
