"""The API endpoints without a page: /render runs a recipe to the end, and
/recipe_schema serves the recipe's JSON Schema. (/generate, /compare and /sweep are
the page's own runs, named where they are wired.)"""
from __future__ import annotations

import gradio as gr
import numpy as np

from composer.recipe import Recipe, RecipeError, echo, recipe_json_schema
from ui.files import data_uri
from ui.frames import spread
from ui.page import RUN_QUEUE
from ui.service import Service
from ui.stack import api_call
from ui.words import flag


def wire(service: Service) -> None:
    @api_call
    def render(recipe: str, frames: int = 8, maps: bool = False, lift: bool | None = None,
               cancel=None) -> dict:
        """Run a recipe (JSON string) to the end. Returns {"recipe": the recipe with
        defaults filled, "images": [PNG data URIs], "frames": [up to `frames` preview
        PNG data URIs, evenly spaced], "points": [[x, y], ...] or null (2D models),
        "metrics": {...}, "verdicts": [per sample: {"rows": [{"row", "text", "negate",
        "holds"}], "clean", "correct"}] (models with a judge, else []), "lift": [per
        sample: {"rows": [{"row", "text", "negate", "lift", "holds"}], "holds"}]: the
        model's own verdicts (composer.lift; `lift` true/false, or null for the model's
        default, off for Stable Diffusion; a recipe with best_of > 1 is always judged
        and keeps each sample's best candidate), "notes": [...],
        "maps": with `maps`, the last step's map then each concept's (2D: density
        p_t; image models under "and": the conflict map), PNG data URIs, else [],
        "levels": [per step: {"acceptance", "step_size" (MCMC), "log_density" (each
        active concept's tracked log-density minus the concepts' mean, averaged over
        the samples; ddpm, ddim and smc), "ess", "resampled" (smc)}]}."""
        try:
            count = int(frames)
        except (TypeError, ValueError, OverflowError):      # None, "x", nan, infinity
            raise RecipeError(f"frames: must be a whole number, got {echo(frames)}") from None
        judge = None if lift is None else flag(lift, "lift")
        result = service.composer.render(Recipe.from_json(recipe), cancel, flag(maps, "maps"), judge)
        last = result.frames[-1]
        picks = spread([f.preview for f in result.frames], count)
        return {"recipe": result.recipe.to_dict(),
                "images": [data_uri(im) for im in result.images],
                "frames": [data_uri(im) for im in picks],
                "points": None if result.points is None else np.asarray(result.points).tolist(),
                "metrics": {k: float(v) for k, v in result.metrics.items()},
                "levels": [{"acceptance": f.acceptance, "step_size": f.step_size,
                            "log_density": list(f.log_density), "ess": f.ess,
                            "resampled": f.resampled} for f in result.frames],
                "verdicts": list(result.verdicts),
                "lift": list(result.lift),
                "notes": list(result.notes),
                "maps": [data_uri(im) for im in ([last.map] if last.map is not None else [])
                         + list(last.concept_maps)]}

    gr.api(render, api_name="render", **RUN_QUEUE)

    def recipe_schema() -> dict:
        """The recipe's JSON Schema (draft 2020-12), as /render and the share links read
        recipes; also in docs/recipe.md."""
        return recipe_json_schema()

    gr.api(recipe_schema, api_name="recipe_schema", queue=False)
