"""The composition rule: every operator, in one place.

A `Rule` says which rows the model must answer (the unconditional row "" first
when the operator needs it) and how to combine their predictions. Noise
predictions eps and energies U (nats, see models/base.py) are combined by the
same rule, so a composed eps is always sigma_t * grad of the composed U.

- and (Composable Diffusion, Liu et al. 2022, eqs. 10-12, with NOT):
      eps* = eps_u + scale * [sum_i w_i (eps_i - eps_u) - sum_j beta_j (eps_j - eps_u)]
  One row with w = 1 is classifier-free guidance at guidance scale `scale`.
- product (Reduce, Reuse, Recycle, Du et al. 2023, energy form):
      U* = scale * [sum_i w_i U_i + sum_j beta_j (U_P - U_j)],  U_P = sum_i w_i U_i / sum_i w_i
  No unconditional row. With no NOT rows this is the product of experts
  prod_i q_i^{w_i}; with one positive q_1 and one NOT q_2 it is RRR's
  q_1^{1+beta} / q_2^{beta} (negation "ratio", the default).
- product with negation "bounded": each NOT term is squashed to at most
  NEGATION_BOUND nats either way,
      U* = scale * [sum_i w_i U_i + sum_j beta_j * c * tanh((U_P - U_j) / c)],  c = NEGATION_BOUND
  The ratio's term beta (U_P - U_j) rewards every point where the negated
  model's energy is high, without limit, so mass flows wherever that model
  extrapolates steeply (outside the positive's support too); the bounded term
  still empties the negated region (a penalty of up to beta * c nats relative
  to the rest) but can no longer pull mass out of the positive's support.
  It needs energies. eps* = scale * [sum_i w_i eps_i
      + sum_j beta_j (1 - tanh^2((U_P - U_j) / c)) (eps_P - eps_j)].
- mixture (RRR): U* = -logsumexp_i(-U_i + log pi_i), pi_i = w_i / sum w.
  It needs energies: scores alone cannot weigh the components.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from composer.recipe import Concept

NEGATION_BOUND = 4.0   # nats: a hole 36% of the box keeps ~e^-4 of its density at beta 1


@dataclass(frozen=True)
class Rule:
    operator: str
    texts: tuple[str, ...]        # rows the model answers, in order
    coefficients: torch.Tensor    # [rows]: linear weights (and, product) or log pi (mixture)
    concept_rows: slice           # the rows that are user concepts (for per-concept previews)
    negated: torch.Tensor | None = None   # [rows]: scale * beta of bounded NOT rows, else 0
    pool: torch.Tensor | None = None      # [rows]: w_i / sum w, the positive pool U_P
    unconditional: int | None = None      # the row of the unconditional model "", if asked for

    @property
    def needs_energy(self) -> bool:
        return self.operator == "mixture" or self.negated is not None


def make_rule(concepts: tuple[Concept, ...], operator: str, scale: float,
              negation: str = "ratio") -> Rule:
    """Build the rule for the active (unmuted) concepts."""
    concepts = tuple(c for c in concepts if not c.muted)
    texts = tuple(c.text for c in concepts)
    signed = torch.tensor([c.coefficient for c in concepts], dtype=torch.float64)
    if operator == "and":
        coefficients = torch.cat([(1.0 - scale * signed.sum()).reshape(1), scale * signed])
        return Rule(operator, ("",) + texts, coefficients.float(), slice(1, None), unconditional=0)
    positive = signed.clamp(min=0)
    if operator == "product" and negation == "bounded":
        betas = (-signed).clamp(min=0)
        return Rule(operator, texts, (scale * positive).float(), slice(0, None),
                    negated=(scale * betas).float(), pool=(positive / positive.sum()).float())
    if operator == "product":
        beta_total = -signed.clamp(max=0).sum()
        coefficients = scale * (signed + beta_total * positive / positive.sum())
        return Rule(operator, texts, coefficients.float(), slice(0, None))
    if operator == "mixture":
        return Rule(operator, texts, (positive / positive.sum()).log().float(), slice(0, None))
    raise ValueError(f"operator: must be one of and, product, mixture; got {operator!r}")


def compose(rule: Rule, eps: torch.Tensor, energy: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Combine stacked predictions eps [rows, B, ...] (and energies [rows, B]).

    Returns the composed eps [B, ...] and, when energies are given, the
    composed energy [B].
    """
    c = rule.coefficients.to(device=eps.device, dtype=eps.dtype)
    if rule.operator == "mixture":
        if energy is None:
            raise ValueError("operator: mixture needs energies; this model only has scores")
        logits = -energy + c[:, None]                       # [rows, B]
        responsibilities = torch.softmax(logits, dim=0)
        composed = torch.einsum("kb,kb...->b...", responsibilities.to(eps.dtype), eps)
        return composed, -torch.logsumexp(logits, dim=0)
    composed = torch.einsum("k,kb...->b...", c, eps)
    composed_energy = None if energy is None else torch.einsum("k,kb->b", c.to(energy.dtype), energy)
    if rule.negated is not None:
        if energy is None:
            raise ValueError("negation: the bounded form needs energies; this model only has scores")
        beta = rule.negated.to(energy.device, energy.dtype)
        pool = rule.pool.to(energy.device, energy.dtype)
        squashed = torch.tanh((torch.einsum("k,kb->b", pool, energy)[None] - energy) / NEGATION_BOUND)
        gate = (beta[:, None] * (1 - squashed ** 2)).to(eps.dtype)           # [rows, B]
        pooled_eps = torch.einsum("k,kb...->b...", pool.to(eps.dtype), eps)
        composed = composed + torch.einsum("kb,kb...->b...", gate, pooled_eps[None] - eps)
        composed_energy = composed_energy + NEGATION_BOUND * torch.einsum("k,kb->b", beta, squashed)
    return composed, composed_energy
