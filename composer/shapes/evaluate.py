"""Composition accuracy of the shapes model, judged analytically.

A task draws random compositions that can be satisfied by construction:
- and<k>: a scene of k objects in distinct cells is drawn; each object gives one
  caption naming a uniformly random non-empty subset of its attributes (as in
  training). A sample is correct when every caption holds (some object matches
  it; one object may satisfy several captions, as the product of densities allows).
- not: one positive caption (as above) and one NOT caption: a single word of a
  kind the positive does not name (e.g. "circle" AND NOT "red"). Correct when
  the positive holds and NO object in the image matches the negated word.

Many compositions are run through the real engine at once: `PerSample` wraps
the adapter so that row i of the rule carries a different caption for each
sample (the engine only sees the placeholder texts "c0", "c1", ...). The rule,
the samplers and the schedulers are exactly the engine's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from composer.engine import sample
from composer.models.base import ModelAdapter
from composer.recipe import Concept, Recipe, SamplerSpec
from composer.shapes.data import (KIND_WORDS, KINDS, object_words, sample_scenes, to_uint8)
from composer.shapes.judge import judge


@dataclass(frozen=True)
class Composition:
    positives: tuple[str, ...]
    negatives: tuple[str, ...] = ()


def make_compositions(task: str, n: int, seed: int) -> list[Composition]:
    g = torch.Generator().manual_seed(seed)
    k = 1 if task == "not" else int(task.removeprefix("and"))
    scenes = sample_scenes(n, g, min_objects=k, max_objects=k)
    out = []
    for b in range(n):
        captions = []
        for i in range(k):
            words = object_words(scenes, b, i)
            subset = int(torch.randint(1, 16, (1,), generator=g))
            captions.append(" ".join(words[kind] for j, kind in enumerate(KINDS) if subset >> j & 1))
        negatives: tuple[str, ...] = ()
        if task == "not":
            named = {kind for j, kind in enumerate(KINDS) if subset >> j & 1}
            free = [kind for kind in KINDS if kind not in named]
            kind = free[int(torch.randint(0, len(free), (1,), generator=g))] if free else "colour"
            choices = [w for w in KIND_WORDS[kind] if w != words[kind]]
            negatives = (choices[int(torch.randint(0, len(choices), (1,), generator=g))],)
        out.append(Composition(tuple(captions), negatives))
    return out


class PerSample(ModelAdapter):
    """The shapes adapter with a different caption per sample on each concept row.

    Rows are named "c0", "c1", ...; row i of sample b is `captions[b][i]`.
    """

    def __init__(self, base: ModelAdapter, captions: list[tuple[str, ...]]):
        self.base = base
        self.captions = captions
        self.family = base.family
        self.sample_shape = base.sample_shape
        self.scheduler_config = base.scheduler_config
        self.defaults = base.defaults
        self.device = base.device
        self.max_samples = len(captions)

    def check_concept(self, text: str) -> None:
        pass

    def encode(self, texts):
        rows = []
        for text in texts:
            if text == "":
                rows.append(self.base.encode(("",)).expand(len(self.captions), -1))
            else:
                i = int(text[1:])
                rows.append(self.base.encode(tuple(c[i] for c in self.captions)))
        return torch.stack(rows)                                   # [rows, B, d]

    @torch.no_grad()
    def predict(self, x, t, alpha_bar, cond, with_energy=False):
        rows, batch = cond.shape[0], x.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(batch)
        eps = self.base.eps(x.repeat(rows, 1, 1, 1), t.repeat(rows), alpha_bar,
                            cond.reshape(rows * batch, -1))
        return eps.reshape(rows, batch, *self.sample_shape), None

    def preview(self, x0):
        return self.base.preview(x0)


def run_task(model, task: str, sampler: SamplerSpec, n: int, steps: int, scale: float | None,
             seed: int = 0, chunk: int = 100, beta: float = 1.0, keep: int = 0) -> dict:
    """Accuracy of one task under one sampler; returns counts and timing, and
    the first `keep` images with their compositions and verdicts under "examples"."""
    compositions = make_compositions(task, n, seed)
    correct, per_caption, acceptance, examples = 0, [], [], []
    start = time.time()
    for lo in range(0, n, chunk):
        part = compositions[lo:lo + chunk]
        captions = [c.positives + c.negatives for c in part]
        k_pos, k_neg = len(part[0].positives), len(part[0].negatives)
        concepts = tuple(Concept(f"c{i}") for i in range(k_pos)) + tuple(
            Concept(f"c{k_pos + j}", negate=True, beta=beta) for j in range(k_neg))
        recipe = Recipe(model="shapes", concepts=concepts, scale=scale, sampler=sampler,
                        steps=steps, seed=seed + lo, num_samples=len(part))
        accepted = []
        record = None
        for record in sample(recipe, PerSample(model, captions)):
            if record.acceptance is not None:
                accepted.append(record.acceptance)
        images = to_uint8(record.x_t.clamp(-1, 1))
        for image, comp in zip(images, part):
            verdict = judge(image, list(comp.positives), list(comp.negatives))
            correct += verdict["correct"]
            per_caption.extend(verdict["positives"])
            if len(examples) < keep:
                examples.append((image, comp, verdict["correct"]))
        if accepted:
            acceptance.append(sum(accepted) / len(accepted))
    return {"task": task, "sampler": sampler.name, "n": n, "steps": steps, "correct": correct,
            "accuracy": correct / n, "caption_accuracy": sum(per_caption) / max(1, len(per_caption)),
            "acceptance": (sum(acceptance) / len(acceptance)) if acceptance else None,
            "seconds": round(time.time() - start, 1), "examples": examples}


__all__ = ["Composition", "PerSample", "make_compositions", "run_task"]
