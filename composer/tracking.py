"""Each row's log-density along a run: SuperDiff's Ito density estimator.

Skreta, Atanackovic et al., ICLR 2025, Theorem 1. With the forward SDE
dx = f dt + g dW and a reverse SDE dx_tau = u dtau + g dW (tau from noise to data,
any drift u), every model's log-density along the trajectory obeys

    d log q_i(x_tau) = <dx_tau, s_i> + (div f + <f, s_i> - (g^2 / 2) |s_i|^2) dtau,

with s_i = grad log q_i (Ito's lemma on log q_i plus its Fokker-Planck equation:
the Laplacian terms cancel). For the VP process f = -beta x / 2 and g^2 = beta, so
div f = -beta d / 2 is the same for every row and costs no network evaluation.
One reverse step from x_t to x_prev, with the step's integrated beta
b = log(abar_prev / abar_t) and s_i = -eps_i / sigma_t, gives

    log q_i(x_prev) - log q_i(x_t) ~ <x_prev - x_t, s_i> - (b / 2) (d + <x_t, s_i> + |s_i|^2).

dx must be the step actually taken, its injected noise included: on a deterministic
step (DDIM) the estimate misses the term -(b / 2) Laplacian(log q_i), which differs
between rows (docs/methods.md measures the error under both). The run starts at the
first level from log N(x_T; 0, I), the same for every row, which is exact as abar_T
goes to 0.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from composer.operators import Rule, SuperDiffAnd
from composer.samplers import Evaluation, reverse_step


def initial_log_density(x: torch.Tensor, rows: int) -> torch.Tensor:
    """[rows, B] float64: log N(x; 0, I), every row alike."""
    flat = x.double().flatten(1)
    value = -0.5 * flat.pow(2).sum(1) - 0.5 * flat.shape[1] * math.log(2 * math.pi)
    return value[None].expand(rows, -1).clone()


def step_beta(abar: float, abar_prev: float) -> float:
    """The VP process's beta integrated over the step from abar to abar_prev (> abar)."""
    return math.log(abar_prev / abar)


def _terms(x: torch.Tensor, eps: torch.Tensor, sigma: float, beta: float
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's score [rows, B, d] and the part of its change that does not depend on
    where the step lands, -(beta / 2)(d + <x_t, s_i> + |s_i|^2) [rows, B], float64."""
    score = -eps.double().flatten(2) / sigma
    flat = x.double().flatten(1)
    fixed = -0.5 * beta * (flat.shape[1] + (score * flat[None]).sum(-1) + score.pow(2).sum(-1))
    return score, fixed


def ito_change(x: torch.Tensor, x_prev: torch.Tensor, eps: torch.Tensor, sigma: float,
               beta: float) -> torch.Tensor:
    """[rows, B] float64: each row's change of log q over the step x -> x_prev, from
    the rows' eps [rows, B, ...] at x (module docstring)."""
    score, fixed = _terms(x, eps, sigma, beta)
    return (score * (x_prev - x).double().flatten(1)[None]).sum(-1) + fixed


def equal_change_step(rule: Rule, scheduler, evaluation: Evaluation, t, x: torch.Tensor,
                      generator: torch.Generator, beta: float) -> tuple[torch.Tensor, Evaluation]:
    """SuperDiff's AND step: the step each concept row alone would take, with the same
    noise (the generator replayed), gives each row's log-density change as a linear
    function of kappa (the step is affine in eps, and sum kappa = 1); kappa makes the
    changes equal (operators.SuperDiffAnd), and the step is taken with that kappa."""
    rows = evaluation.rows
    concepts = rows[rule.concept_rows]
    guided = (concepts if rule.unconditional is None else
              rows[rule.unconditional][None] + rule.scale * (concepts - rows[rule.unconditional][None]))
    state = generator.get_state()

    def step(eps: torch.Tensor) -> torch.Tensor:
        generator.set_state(state)
        return reverse_step(scheduler, eps, t, x, generator)
    moved = torch.stack([step(eps) for eps in guided]) - x[None]           # [M, B, ...]
    score, fixed = _terms(x, concepts, evaluation.sigma, beta)
    changes = torch.einsum("ibd,jbd->ijb", score, moved.double().flatten(2))
    kappa = SuperDiffAnd.equal_change_weights(changes, fixed)
    eps = torch.einsum("jb,jb...->b...", kappa.to(guided.dtype), guided)
    return step(eps), dataclasses.replace(evaluation, eps=eps)
