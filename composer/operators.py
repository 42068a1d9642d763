"""The composition rule: every operator, in one place.

An operator is a small object (in the spirit of diffusers' guiders): it says which
rows the model must answer, how their predictions combine, whether it needs
energies or the rows' tracked log-densities, and how a finished sample is judged
against its rows. `OPERATORS` is the registry that the recipe schema, the UI's menu
and the verdicts read. A `Rule` is an operator applied to one recipe's rows.

Noise predictions eps and energies U (nats, see models/base.py) are combined by the
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
- superdiff_or (SuperDiff, Skreta, Atanackovic et al., ICLR 2025, Sec. 3): the
  mixture for score-only models. The log-densities come from the Ito estimator
  along the run (composer/tracking.py), not from energies:
      kappa = softmax_i(T (log q_i(x_t) + log pi_i)),
      eps* = sum_i kappa_i eps_i                      (scale 1: the mixture's score)
      eps* = eps_u + scale * (sum_i kappa_i eps_i - eps_u)   (scale != 1: guided)
  At T = 1 and scale 1, sum_i kappa_i eps_i is exactly the mixture's eps when the
  log q_i are exact, so it matches RRR's mixture on an energy model.
- superdiff_and (SuperDiff, Prop. 6): kappa solved at every step so that every
  row's log-density changes by the same amount over the step; the solve needs the
  step's noise, so the engine asks the operator for kappa (`equal_change_weights`)
  with the step already taken row by row.

Linear rules (and, product with the ratio) define the target p~ = prod_i q_i^{c_i}
at every level; `fk_log_weight` gives the Feynman-Kac corrector weight that makes
particles follow it (composer/engine.py, sampler "smc").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

NEGATION_BOUND = 4.0   # nats: a hole 36% of the box keeps ~e^-4 of its density at beta 1


@dataclass(frozen=True)
class Rule:
    operator: "Operator"
    texts: tuple[str, ...]        # rows the model answers, in order
    coefficients: torch.Tensor    # [rows]: linear weights (and, product) or log pi (the ORs)
    concept_rows: slice           # the rows that are user concepts (for per-concept previews)
    negated: torch.Tensor | None = None   # [rows]: scale * beta of bounded NOT rows, else 0
    pool: torch.Tensor | None = None      # [rows]: w_i / sum w, the positive pool U_P
    unconditional: int | None = None      # the row of the unconditional model "", if asked for
    scale: float = 1.0
    temperature: float = 1.0              # SuperDiff's T
    weights: torch.Tensor | None = None   # [concept rows]: and's signed w_i, -beta_j

    @property
    def needs_energy(self) -> bool:
        return self.operator.needs_energy or self.negated is not None

    @property
    def linear(self) -> bool:
        """eps* = sum_i c_i eps_i with fixed c: the target is prod_i q_i^{c_i}."""
        return self.operator.linear and self.negated is None


class Operator:
    """One way of combining rows. Subclasses set the facts and write `rule` and `combine`."""
    name = ""
    label = ""                    # the menu's words (ui/form.py says what each is)
    needs_energy = False          # only energy-parameterised models can run it
    takes_not = True              # NOT rows mean something under it
    any_row = False               # a sample satisfies it when one positive row holds (OR)
    tracks_density = False        # reads the rows' Ito-tracked log-densities
    linear = True                 # eps* = sum_i c_i eps_i with fixed coefficients
    solves_step = False           # chooses its weights with the reverse step's own noise
    # Coefficients summing to 1: the combination commutes with any affine change of what
    # the rows predict (eps, v, a flow's velocity), so it can be taken on either.
    affine = False

    def rule(self, concepts: Sequence, scale: float, negation: str = "ratio",
             temperature: float = 1.0) -> Rule:
        raise NotImplementedError

    def combine(self, rule: Rule, eps: torch.Tensor, energy: torch.Tensor | None,
                log_density: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """eps [rows, B, ...] (energies [rows, B], tracked log q [rows, B]) -> eps* [B, ...], U* [B]."""
        c = rule.coefficients.to(device=eps.device, dtype=eps.dtype)
        composed = torch.einsum("k,kb...->b...", c, eps)
        return composed, None if energy is None else torch.einsum("k,kb->b", c.to(energy.dtype), energy)

    def satisfied(self, positives: Sequence[bool], negatives: Sequence[bool]) -> bool:
        """Whether a sample satisfies the composition, given which positive rows hold
        and which NOT rows hold (the negated concept is absent): every row for AND
        and product; at least one positive and every NOT for an OR."""
        wanted = any(positives) if self.any_row else all(positives)
        return wanted and all(negatives)

    def verdict_words(self) -> str:
        return ("satisfy at least one row (and no NOT row)" if self.any_row
                else "satisfy every row")


def _active(concepts: Sequence) -> tuple[tuple[str, ...], torch.Tensor]:
    active = tuple(c for c in concepts if not c.muted)
    return (tuple(c.text for c in active),
            torch.tensor([c.coefficient for c in active], dtype=torch.float64))


class LiuAnd(Operator):
    name, label = "and", "AND (sum)"
    affine = True

    def rule(self, concepts, scale, negation="ratio", temperature=1.0):
        texts, signed = _active(concepts)
        unconditional = 1.0 - scale * signed.sum()
        # One row at scale * w = 1 is that row's own prediction: "" weighs nothing and is not
        # asked for, as the pipelines skip it at guidance 1 (with more rows the conflict
        # map still measures their directions from it)
        if unconditional == 0 and len(texts) == 1:
            return Rule(self, texts, (scale * signed).float(), slice(0, None), scale=scale,
                        weights=signed.float())
        coefficients = torch.cat([unconditional.reshape(1), scale * signed])
        return Rule(self, ("",) + texts, coefficients.float(), slice(1, None), unconditional=0,
                    scale=scale, weights=signed.float())

    def combine(self, rule, eps, energy, log_density):
        """In the guidance form eps_u + scale * sum_i w_i (eps_i - eps_u): the same sum as
        the coefficients', in the pipelines' order of operations, so that one concept
        rounds exactly as their classifier-free guidance does."""
        if rule.unconditional is None:
            return super().combine(rule, eps, energy, log_density)
        unconditional = eps[rule.unconditional]
        w = rule.weights.to(device=eps.device, dtype=eps.dtype)
        guided = torch.einsum("k,kb...->b...", w, eps[rule.concept_rows] - unconditional[None])
        composed = unconditional + rule.scale * guided
        if energy is None:
            return composed, None
        return composed, torch.einsum("k,kb->b", rule.coefficients.to(energy), energy)


class Product(Operator):
    name, label = "product", "product"

    def rule(self, concepts, scale, negation="ratio", temperature=1.0):
        texts, signed = _active(concepts)
        positive = signed.clamp(min=0)
        if negation == "bounded":
            betas = (-signed).clamp(min=0)
            return Rule(self, texts, (scale * positive).float(), slice(0, None),
                        negated=(scale * betas).float(), pool=(positive / positive.sum()).float(),
                        scale=scale)
        beta_total = -signed.clamp(max=0).sum()
        coefficients = scale * (signed + beta_total * positive / positive.sum())
        return Rule(self, texts, coefficients.float(), slice(0, None), scale=scale)

    def combine(self, rule, eps, energy, log_density):
        composed, composed_energy = super().combine(rule, eps, energy, log_density)
        if rule.negated is None:
            return composed, composed_energy
        if energy is None:
            raise ValueError("negation: the bounded form needs energies; this model only has scores")
        beta = rule.negated.to(energy.device, energy.dtype)
        pool = rule.pool.to(energy.device, energy.dtype)
        squashed = torch.tanh((torch.einsum("k,kb->b", pool, energy)[None] - energy) / NEGATION_BOUND)
        gate = (beta[:, None] * (1 - squashed ** 2)).to(eps.dtype)           # [rows, B]
        pooled_eps = torch.einsum("k,kb...->b...", pool.to(eps.dtype), eps)
        composed = composed + torch.einsum("kb,kb...->b...", gate, pooled_eps[None] - eps)
        return composed, composed_energy + NEGATION_BOUND * torch.einsum("k,kb->b", beta, squashed)


def _log_weights(concepts: Sequence) -> tuple[tuple[str, ...], torch.Tensor]:
    texts, signed = _active(concepts)
    positive = signed.clamp(min=0)
    return texts, (positive / positive.sum()).log().float()


class Mixture(Operator):
    name, label = "mixture", "OR (mixture)"
    needs_energy, takes_not, any_row, linear = True, False, True, False

    def rule(self, concepts, scale, negation="ratio", temperature=1.0):
        texts, log_pi = _log_weights(concepts)
        return Rule(self, texts, log_pi, slice(0, None), scale=scale)

    def combine(self, rule, eps, energy, log_density):
        if energy is None:
            raise ValueError("operator: mixture needs energies; this model only has scores")
        logits = -energy + rule.coefficients.to(energy.device, energy.dtype)[:, None]   # [rows, B]
        responsibilities = torch.softmax(logits, dim=0)
        composed = torch.einsum("kb,kb...->b...", responsibilities.to(eps.dtype), eps)
        return composed, -torch.logsumexp(logits, dim=0)


def _guided(rule: Rule, eps: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """sum_i kappa_i eps_i over the concept rows [B, ...], guided from "" at scale != 1."""
    mixed = torch.einsum("kb,kb...->b...", kappa.to(eps.dtype), eps[rule.concept_rows])
    if rule.unconditional is None:
        return mixed
    unconditional = eps[rule.unconditional]
    return unconditional + rule.scale * (mixed - unconditional)


def _superdiff_rule(operator: Operator, concepts, scale: float, temperature: float,
                    coefficients_of) -> Rule:
    texts, coefficients = coefficients_of(concepts)
    if scale == 1.0:        # the plain mixture or product: no unconditional row to pay for
        return Rule(operator, texts, coefficients, slice(0, None), scale=scale,
                    temperature=temperature)
    return Rule(operator, ("",) + texts, coefficients, slice(1, None), unconditional=0,
                scale=scale, temperature=temperature)


class SuperDiffOr(Operator):
    name, label = "superdiff_or", "OR (SuperDiff)"
    takes_not, any_row, tracks_density, linear = False, True, True, False

    def rule(self, concepts, scale, negation="ratio", temperature=1.0):
        return _superdiff_rule(self, concepts, scale, temperature, _log_weights)

    def kappa(self, rule: Rule, log_density: torch.Tensor) -> torch.Tensor:
        """[concepts, B]: softmax_i(T (log q_i + log pi_i)), the bias inside the
        temperature as in SuperDiff's code."""
        logits = rule.temperature * (log_density[rule.concept_rows]
                                     + rule.coefficients.to(log_density)[:, None])
        return torch.softmax(logits, dim=0)

    def combine(self, rule, eps, energy, log_density):
        if log_density is None:     # off the trajectory (a map's grid): the weights alone
            log_density = torch.zeros(len(rule.texts), eps.shape[1], dtype=torch.float64)
        return _guided(rule, eps, self.kappa(rule, log_density.to(eps.device))), None


class SuperDiffAnd(Operator):
    name, label = "superdiff_and", "AND (SuperDiff)"
    takes_not, tracks_density, linear, solves_step = False, True, False, True

    def rule(self, concepts, scale, negation="ratio", temperature=1.0):
        def uniform(rows):
            texts, _ = _active(rows)
            return texts, torch.full((len(texts),), 1.0 / len(texts))
        return _superdiff_rule(self, concepts, scale, temperature, uniform)

    def combine(self, rule, eps, energy, log_density):
        # Where no step is being taken (a preview, a map), the rows count equally.
        kappa = rule.coefficients.to(eps)[:, None].expand(-1, eps.shape[1])
        return _guided(rule, eps, kappa), None

    @staticmethod
    def equal_change_weights(changes: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """kappa [M, B] with sum_j kappa_j = 1 such that every row i's log-density
        change  base_i + sum_j kappa_j changes[i, j]  is the same for all i.

        changes [M, M, B]: d log q_i when the step follows row j alone (its part that
        is linear in kappa); base [M, B]: the part that does not depend on kappa. M + 1
        equations (M - 1 equal changes, sum kappa = 1) solved per sample by least
        squares, which is exact when the system is square and well posed."""
        rows, batch = base.shape
        a = changes.permute(2, 0, 1).double()                              # [B, M, M]
        b = -base.T.double()                                               # [B, M]
        # (A_i - A_0) kappa = b_i - b_0 for i >= 1, and 1 . kappa = 1
        system = torch.cat([a[:, 1:] - a[:, :1], torch.ones(batch, 1, rows, dtype=a.dtype)], 1)
        target = torch.cat([b[:, 1:] - b[:, :1], torch.ones(batch, 1, dtype=b.dtype)], 1)
        kappa = torch.linalg.lstsq(system, target[..., None]).solution[..., 0]
        return kappa.T.to(base.dtype)


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    LiuAnd(), Product(), Mixture(), SuperDiffOr(), SuperDiffAnd())}


def make_rule(concepts: Sequence, operator: str, scale: float, negation: str = "ratio",
              temperature: float = 1.0) -> Rule:
    """Build the rule for the active (unmuted) concepts."""
    if operator not in OPERATORS:
        raise ValueError(f"operator: must be one of {', '.join(OPERATORS)}; got {operator!r}")
    return OPERATORS[operator].rule(concepts, scale, negation, temperature)


def compose(rule: Rule, eps: torch.Tensor, energy: torch.Tensor | None = None,
            log_density: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Combine stacked predictions eps [rows, B, ...] (and energies [rows, B]; tracked
    log-densities [rows, B] for the SuperDiff operators). Returns the composed eps
    [B, ...] and, when the rule gives one, the composed energy [B]."""
    return rule.operator.combine(rule, eps, energy, log_density)


def fk_log_weight(rule: Rule, eps: torch.Tensor, composed: torch.Tensor, sigma: float,
                  beta: float) -> torch.Tensor:
    """[B]: the Feynman-Kac corrector's log-weight increment over one reverse step of
    a linear rule (Skreta, Akhound-Sadegh et al., ICML 2025, Props. 3.1, 3.3, D.5).

    The particles follow the reverse SDE of the VP process (drift f = -x beta/2,
    g^2 = beta) with the composed score s = sum_i c_i s_i, and the target at every level
    is p~ = prod_i q_i^{c_i}. The weight rate d_tau log p~ - (L* p~)/p~ works out to
        (sum_i c_i - 1) div f + (g^2 / 2) (|sum_i c_i s_i|^2 - sum_i c_i |s_i|^2):
    the Laplacians cancel and div f is the same for every particle, so only the second
    term weighs them. Two experts at c = (1, 1) give g^2 <s_1, s_2> (the paper's
    product of experts); "and" with one row, c = (1 - w, w), gives
    (g^2 / 2) w (w - 1) |s_c - s_u|^2 (the paper's CFG). With s_i = -eps_i / sigma and
    g^2 dtau = beta (the step's integrated beta):
        dlog w = beta / (2 sigma^2) * (|eps*|^2 - sum_i c_i |eps_i|^2)."""
    if not rule.linear:
        raise ValueError(f"operator: {rule.operator.name!r} is not a fixed sum of the rows, "
                         f"so it has no Feynman-Kac weight")
    c = rule.coefficients.to(device=eps.device, dtype=torch.float64)
    per_row = eps.double().flatten(2).pow(2).sum(-1)                   # [rows, B]
    spread = composed.double().flatten(1).pow(2).sum(-1) - torch.einsum("k,kb->b", c, per_row)
    return beta / (2 * sigma ** 2) * spread
