"""Command line: python -m composer render RECIPE --out DIR [--model NAME] [--device DEV]

Writes image_NN.png (each carrying the recipe), recipe.json with every default
filled in, and for toy2d samples.npy and scatter.png. Any failure (a bad or
unreadable recipe, a model that cannot load, an unusable device or output
folder) prints one line, `error: ...`, and exits with status 2; library
warnings are shown only with --verbose.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from composer.facade import Composer, ComposerError
from composer.media import save_png
from composer.recipe import MAX_RECIPE_BYTES, Recipe, RecipeError

DEVICES = ("cpu", "cuda")


def read_recipe(path: str) -> Recipe:
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_RECIPE_BYTES + 1)     # /dev/zero must not fill memory
    except OSError as err:
        raise RecipeError(f"recipe: cannot read {path} ({err.strerror})") from None
    return Recipe.from_json(text)


def device(name: str | None) -> torch.device | None:
    if name is None:
        return None
    if name.split(":")[0] not in DEVICES:
        raise ComposerError(f"--device: must be one of {', '.join(DEVICES)}, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ComposerError("--device: cuda was asked for, but this machine has no CUDA device")
    return torch.device(name)


def render(args: argparse.Namespace) -> None:
    recipe = read_recipe(args.recipe)
    if args.model:
        recipe = dataclasses.replace(recipe, model=args.model)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ComposerError(f"--out: cannot create the folder {args.out} ({err.strerror})") from None
    result = Composer(device(args.device)).render(recipe)
    try:
        (out / "recipe.json").write_text(result.recipe.to_json() + "\n")
        if result.points is not None:
            np.save(out / "samples.npy", result.points)
            save_png(result.images[0], result.recipe, out / "scatter.png")
        else:
            for i, image in enumerate(result.images):
                save_png(image, result.recipe, out / f"image_{i:02d}.png")
    except OSError as err:
        raise ComposerError(f"--out: cannot write into {args.out} ({err.strerror})") from None
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for name, value in result.metrics.items():
        print(f"{name}: {value:.4f}")
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
    args = parser.parse_args(argv)
    with quiet_libraries(not args.verbose):
        try:
            render(args)
        except (RecipeError, ComposerError) as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
