"""Composition accuracy of the shapes model, judged strictly by the analytic judge.

Two families of compositions, as in the evaluation brief (docs/shapes.md):
- placed: each caption names colour, shape, column and row ("red circle left
  top"), like Composable Diffusion's CLEVR experiment, where each condition
  was an object's position;
- free: colour and shape only ("red circle"), what a visitor types, where
  binding a colour to its shape is hardest.

Tasks: and<k> draws k objects in distinct cells with distinct colours and ANDs
their captions; not ANDs one such caption with NOT a colour it does not use
("red circle AND NOT blue"); or draws two such captions for an OR (operator
superdiff_or or mixture, weights OR_WEIGHTS). A sample is correct when the judge
finds a clean scene that satisfies the composition as its operator reads the rows
(operators.py: every positive caption and no object of the negated colour; for an OR,
one caption); the caption-only rate is reported beside it, and for an OR the share of
samples in which each caption holds.

Many compositions run through the real engine at once: `PerSample` wraps the
adapter so that row i of the rule carries a different caption for each sample
(the engine only sees the placeholder texts "c0", "c1", ...). The rule, the
samplers and the schedulers are exactly the engine's.

This module drives the engine, so it lives above the model packages:
composer/shapes/ holds data, network, training and judge, and imports nothing
from here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from composer.engine import candidates, sample
from composer.lift import best_of, measure_lift
from composer.models import ModelAdapter, pictures_of
from composer.operators import OPERATORS
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.shapes.data import COLOURS, COLUMNS, ROWS, SHAPES
from composer.shapes.judge import judge

FAMILIES = ("placed", "free")
TASKS = ("and1", "and2", "and3", "not", "or")
OR_WEIGHTS = (1.0, 3.0)      # an OR task's row weights: the exact mixture draws 1/4 and 3/4


@dataclass(frozen=True)
class Composition:
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " AND ".join(self.positives) + "".join(f" AND NOT {n}" for n in self.negatives)


def make_compositions(family: str, task: str, n: int, seed: int) -> list[Composition]:
    """n satisfiable compositions of one family and task, deterministic for a seed."""
    if family not in FAMILIES:
        raise ValueError(f"family: must be one of {', '.join(FAMILIES)}, got {family!r}")
    if task not in TASKS:
        raise ValueError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
    g = torch.Generator().manual_seed(seed)
    k = {"not": 1, "or": 2}.get(task) or int(task.removeprefix("and"))
    colours = list(COLOURS)
    out = []
    for _ in range(n):
        cells = torch.randperm(9, generator=g)[:k].tolist()
        picked = torch.randperm(len(colours), generator=g).tolist()
        shapes = torch.randint(0, len(SHAPES), (k,), generator=g).tolist()
        captions = []
        for i in range(k):
            words = [colours[picked[i]], SHAPES[shapes[i]]]
            if family == "placed":
                words += [COLUMNS[cells[i] % 3], ROWS[cells[i] // 3]]
            captions.append(" ".join(words))
        negatives = (colours[picked[k]],) if task == "not" else ()
        out.append(Composition(tuple(captions), negatives))
    return out


class PerSample(ModelAdapter):
    """The shapes adapter with a different caption per sample on each concept row.

    Rows are named "c0", "c1", ...; row i of sample b is `captions[b][i]`. A batch of
    K times as many points (smc's particles) gives each sample's caption to K in a row.
    """

    def __init__(self, base: ModelAdapter, captions: list[tuple[str, ...]]):
        self.base = base
        self.captions = captions
        self.family = base.family
        self.has_energy = base.has_energy
        self.sample_shape = base.sample_shape
        self.scheduler_config = base.scheduler_config
        self.defaults = base.defaults
        self.device = base.device
        self.max_samples = 16 * len(captions)

    def check_concept(self, text: str) -> None:
        pass

    def encode(self, texts):
        rows = []
        for text in texts:
            if text == "":
                empty = self.base.encode(("",))
                rows.append(empty.expand(len(self.captions), *empty.shape[1:]))
            else:
                i = int(text[1:])
                rows.append(self.base.encode(tuple(c[i] for c in self.captions)))
        return torch.stack(rows)                                   # [rows, B, ...]

    def predict(self, x, t, alpha_bar, cond, with_energy=False):
        if x.shape[0] != len(self.captions):
            cond = cond.repeat_interleave(x.shape[0] // len(self.captions), dim=1)
        return self.base.predict_per_sample(x, t, alpha_bar, cond, with_energy)


def run_task(model, family: str, task: str, sampler: SamplerSpec, n: int, steps: int,
             scale: float | None, seed: int = 0, chunk: int = 64, beta: float = 1.0,
             keep: int = 0, repeats: int = 1, operator: str | None = None,
             best_of_n: int = 1) -> dict:
    """Strict and caption-only accuracy of one task under one sampler and operator
    ("and", or "superdiff_or" for the or task, unless given), over n compositions
    drawn `repeats` times each; best_of_n > 1 keeps each sample's candidate chosen by
    the model's lift (composer/lift.py). The first `keep` images come back with their
    compositions and verdicts under "examples", every final image under "images"."""
    operator = operator or ("superdiff_or" if task == "or" else "and")
    # An OR task is judged as an OR whichever operator tried it (Liu's sum, say).
    judged_by = OPERATORS["superdiff_or" if task == "or" else operator]
    compositions = [c for c in make_compositions(family, task, n, seed) for _ in range(repeats)]
    pictures = pictures_of(model)
    total = len(compositions)
    correct = captions_hold = clean = 0
    holding = [0, 0]
    acceptance, examples, images = [], [], []
    start = time.time()
    for lo in range(0, total, chunk):
        part = compositions[lo:lo + chunk]
        rows = [c.positives + c.negatives for c in part]
        k_pos, k_neg = len(part[0].positives), len(part[0].negatives)
        weights = OR_WEIGHTS if task == "or" else (1.0,) * k_pos
        concepts = tuple(Concept(f"c{i}", weight=weights[i]) for i in range(k_pos)) + tuple(
            Concept(f"c{k_pos + j}", negate=True, beta=beta) for j in range(k_neg))
        recipe = Recipe(model="shapes", concepts=concepts, scale=scale, sampler=sampler,
                        steps=steps, seed=seed + lo, num_samples=len(part), operator=operator,
                        best_of=best_of_n)
        batch_rows = [r for r in rows for _ in range(best_of_n)]
        accepted, record = [], None
        for record in sample(candidates(recipe), PerSample(model, batch_rows)):
            if record.acceptance is not None:
                accepted.append(record.acceptance)
        final = record.x_t
        if best_of_n > 1:
            verdict = measure_lift(PerSample(model, batch_rows), candidates(recipe), final,
                           max_rows=(len(concepts) + 1) * len(batch_rows))
            final = final[best_of(verdict, best_of_n)]
        for image, comp in zip(pictures.decode(final), part):
            verdict = judge(image, list(comp.positives), list(comp.negatives))
            held = judged_by.satisfied(verdict["positives"], [not v for v in verdict["negatives"]])
            correct += verdict["clean"] and held
            captions_hold += held
            clean += verdict["clean"]
            holding = [h + bool(v) for h, v in zip(holding, verdict["positives"])]
            images.append(image)
            if len(examples) < keep:
                examples.append((image, comp, verdict))
        if accepted:
            acceptance.append(sum(accepted) / len(accepted))
    return {"family": family, "task": task, "sampler": sampler.name, "n": n, "samples": total,
            "steps": steps, "scale": scale, "correct": correct, "accuracy": correct / total,
            "caption_accuracy": captions_hold / total, "clean": clean / total,
            "caption_shares": [h / total for h in holding[:k_pos]], "operator": operator,
            "acceptance": (sum(acceptance) / len(acceptance)) if acceptance else None,
            "seconds": round(time.time() - start, 1), "examples": examples, "images": images}


__all__ = ["Composition", "FAMILIES", "OR_WEIGHTS", "PerSample", "TASKS", "make_compositions",
           "run_task"]
