"""Command line: python -m composer render RECIPE --out DIR [--model NAME] [--device DEV]

Writes image_NN.png (each carrying the recipe), recipe.json with every default
filled in, and for toy2d samples.npy and scatter.png. A bad recipe prints one
line naming the problem and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from composer.facade import Composer, ComposerError
from composer.media import save_png
from composer.recipe import Recipe, RecipeError


def render(args: argparse.Namespace) -> None:
    try:
        recipe = Recipe.from_json(Path(args.recipe).read_text())
    except OSError as err:
        raise RecipeError(f"recipe: cannot read {args.recipe} ({err.strerror})") from None
    if args.model:
        recipe = dataclasses.replace(recipe, model=args.model)
    result = Composer(args.device).render(recipe)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.json").write_text(result.recipe.to_json() + "\n")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.points is not None:
        np.save(out / "samples.npy", result.points)
        save_png(result.images[0], result.recipe, out / "scatter.png")
    else:
        for i, image in enumerate(result.images):
            save_png(image, result.recipe, out / f"image_{i:02d}.png")
    for name, value in result.metrics.items():
        print(f"{name}: {value:.4f}")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    render_cmd = commands.add_parser("render", help="render a recipe JSON file")
    render_cmd.add_argument("recipe")
    render_cmd.add_argument("--out", required=True, help="output folder")
    render_cmd.add_argument("--model", help="override the recipe's model (name, hub id or folder)")
    render_cmd.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    try:
        render(args)
    except (RecipeError, ComposerError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
