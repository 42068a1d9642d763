"""The shapes models' pictures and scores (both `shapes` and `shapes-exact`).

Samples are [3, 32, 32] in [-1, 1]. `decode` returns one uint8 32x32 image per
sample at native resolution (upscaling is left to the display); `preview` tiles
the batch into one uint8 grid at native resolution with 2-pixel white gutters
(composer/pictures.py, as every model's pictures). Scores come from the analytic
judge (composer/shapes/judge.py) on those images.
"""
from __future__ import annotations

import numpy as np
import torch

from composer.models.outputs import Pictures, Scoring
from composer.operators import OPERATORS
from composer.pictures import grid, to_uint8
from composer.shapes.judge import judge


class ShapesPictures(Pictures):
    def decode(self, x0: torch.Tensor) -> list[np.ndarray]:
        return list(to_uint8(x0))

    def preview_tiles(self, x0: torch.Tensor) -> np.ndarray:
        return to_uint8(x0)

    def preview(self, x0: torch.Tensor) -> np.ndarray:
        return grid(self.preview_tiles(x0))


class ShapesScoring(Scoring):
    def verdicts(self, recipe, x0: torch.Tensor) -> list[dict]:
        """The analytic judge on each final sample: per active row whether it holds
        (an AND caption is matched by an object, a NOT caption by none), whether the
        scene is clean, "holds": the composition is satisfied as its operator reads the
        rows (every row; for an OR, one positive and every NOT), and "correct": it holds
        in a clean scene."""
        rows = [(n, c) for n, c in enumerate(recipe.concepts, 1) if not c.muted and c.coefficient != 0]
        positives = [c.text for _, c in rows if not c.negate]
        negatives = [c.text for _, c in rows if c.negate]
        operator, out = OPERATORS[recipe.operator], []
        for image in to_uint8(x0):
            verdict = judge(image, positives, negatives)
            held = iter(verdict["positives"])
            absent = iter(not v for v in verdict["negatives"])
            per_row = [{"row": n, "text": c.text, "negate": c.negate,
                        "holds": next(absent) if c.negate else next(held)} for n, c in rows]
            holds = operator.satisfied(verdict["positives"], [not v for v in verdict["negatives"]])
            out.append({"rows": per_row, "clean": verdict["clean"], "holds": holds,
                        "correct": verdict["clean"] and holds})
        return out

    def metrics(self, recipe, x0: torch.Tensor) -> dict[str, float]:
        """Shares of samples strictly correct, whose rows all hold (clutter
        ignored; for a mixture, one positive row suffices), and that are clean scenes."""
        verdicts = self.verdicts(recipe, x0)
        operator = OPERATORS[recipe.operator]
        rows_hold = [operator.satisfied([r["holds"] for r in v["rows"] if not r["negate"]],
                                        [r["holds"] for r in v["rows"] if r["negate"]])
                     for v in verdicts]
        return {"correct": sum(v["correct"] for v in verdicts) / len(verdicts),
                "rows_hold": sum(rows_hold) / len(verdicts),
                "clean": sum(v["clean"] for v in verdicts) / len(verdicts)}
