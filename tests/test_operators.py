"""The composition rule against analytic cases."""
import math

import pytest
import torch

from composer.operators import NEGATION_BOUND, compose, make_rule
from composer.recipe import Concept

SIGMA = 0.7


def gaussian_energy(x, mean, std):
    """-log N(x; mean, std^2 I) in 2D, normalised."""
    return ((x - torch.tensor(mean)) ** 2).sum(-1) / (2 * std ** 2) + math.log(2 * math.pi * std ** 2)


def eps_and_energy(x, experts):
    """Stacked eps = sigma * grad U and energies for a list of (mean, std)."""
    x = x.clone().requires_grad_(True)
    energies = torch.stack([gaussian_energy(x, m, s) for m, s in experts])
    grads = [torch.autograd.grad(e.sum(), x, retain_graph=True)[0] for e in energies]
    return SIGMA * torch.stack(grads), energies.detach()


@pytest.fixture
def points():
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 2


def test_product_of_gaussian_experts_is_the_product_gaussian(points):
    experts = [((-1.0, 0.5), 0.5), ((1.0, -0.5), 0.8)]
    eps, energy = eps_and_energy(points, experts)
    rule = make_rule((Concept("a"), Concept("b")), "product", 1.0)
    composed_eps, composed_energy = compose(rule, eps, energy)
    precisions = [1 / s ** 2 for _, s in experts]
    var = 1 / sum(precisions)
    mean = [var * sum(p * m[i] for p, (m, _) in zip(precisions, experts)) for i in range(2)]
    expected_eps = SIGMA * (points - torch.tensor(mean)) / var
    torch.testing.assert_close(composed_eps, expected_eps, rtol=1e-5, atol=1e-5)
    # Energies agree with the product Gaussian up to a constant.
    offset = composed_energy - gaussian_energy(points, mean, math.sqrt(var))
    assert offset.std() < 1e-4


def test_mixture_energy_is_the_mixture_log_density_up_to_a_constant(points):
    experts = [((-1.0, 0.0), 0.4), ((1.5, 0.5), 0.6)]
    weights = (1.0, 3.0)
    eps, energy = eps_and_energy(points, experts)
    rule = make_rule(tuple(Concept(t, weight=w) for t, w in zip("ab", weights)), "mixture", 1.0)
    composed_eps, composed_energy = compose(rule, eps, energy)
    x = points.clone().requires_grad_(True)
    densities = [w / sum(weights) * torch.exp(-gaussian_energy(x, m, s))
                 for w, (m, s) in zip(weights, experts)]
    true_energy = -torch.log(sum(densities))
    offset = composed_energy - true_energy.detach()
    assert offset.abs().max() < 1e-4  # normalised experts: the constant is 0
    true_eps = SIGMA * torch.autograd.grad(true_energy.sum(), x)[0]
    torch.testing.assert_close(composed_eps, true_eps, rtol=1e-4, atol=1e-5)


def test_mixture_without_energies_is_refused(points):
    eps, _ = eps_and_energy(points, [((0, 0), 1), ((1, 1), 1)])
    rule = make_rule((Concept("a"), Concept("b")), "mixture", 1.0)
    with pytest.raises(ValueError, match="mixture needs energies"):
        compose(rule, eps)


def test_and_with_one_concept_is_classifier_free_guidance():
    eps = torch.randn(2, 5, 3, 4, 4)
    rule = make_rule((Concept("cat"),), "and", 7.5)
    assert rule.texts == ("", "cat")
    composed, _ = compose(rule, eps)
    torch.testing.assert_close(composed, eps[0] + 7.5 * (eps[1] - eps[0]))


def test_and_not_follows_composable_diffusion():
    eps = torch.randn(4, 3, 2)
    concepts = (Concept("a", weight=2.0), Concept("b", weight=0.5), Concept("c", negate=True, beta=1.5))
    composed, _ = compose(make_rule(concepts, "and", 3.0), eps)
    u = eps[0]
    expected = u + 3.0 * (2.0 * (eps[1] - u) + 0.5 * (eps[2] - u) - 1.5 * (eps[3] - u))
    torch.testing.assert_close(composed, expected)


def test_product_negation_is_rrr_form():
    rule = make_rule((Concept("big"), Concept("small", negate=True, beta=0.5)), "product", 1.0)
    torch.testing.assert_close(rule.coefficients, torch.tensor([1.5, -0.5]))


def test_muted_rows_take_no_part():
    rule = make_rule((Concept("a"), Concept("b", muted=True)), "and", 2.0)
    assert rule.texts == ("", "a")


@pytest.mark.parametrize("operator", ["and", "product"])
def test_scores_and_energies_combine_by_the_same_rule(points, operator):
    experts = [((0.0, 0.0), 1.5), ((-1.0, 0.5), 0.5), ((1.0, 0.0), 0.7)]
    eps, energy = eps_and_energy(points, experts if operator == "and" else experts[1:])
    concepts = (Concept("a", weight=1.2), Concept("b", negate=True, beta=0.4))
    rule = make_rule(concepts, operator, 2.0)
    composed_eps, _ = compose(rule, eps, energy)
    x = points.clone().requires_grad_(True)
    rows = experts if operator == "and" else experts[1:]
    energies = torch.stack([gaussian_energy(x, m, s) for m, s in rows])
    composed_energy = torch.einsum("k,kb->b", rule.coefficients, energies)
    grad = torch.autograd.grad(composed_energy.sum(), x)[0]
    torch.testing.assert_close(composed_eps, SIGMA * grad, rtol=1e-4, atol=1e-5)


# --- negation forms, each against a Gaussian case with a closed form ---------------

POSITIVE, NEGATED = ((-0.5, 0.2), 0.5), ((0.4, -0.3), 1.0)


def gaussian_eps(points, mean, precision):
    """sigma * grad U for U = precision |x - mean|^2 / 2."""
    return SIGMA * precision * (points - torch.tensor(mean))


@pytest.mark.parametrize("beta", [0.3, 1.0, 2.0])
def test_ratio_negation_of_gaussians_is_the_ratio_gaussian(points, beta):
    """q1^(1+b) / q2^b for q1 = N(m1, s1^2), q2 = N(m2, s2^2) is Gaussian with precision
    (1+b)/s1^2 - b/s2^2 and mean ((1+b) m1/s1^2 - b m2/s2^2) / precision."""
    (m1, s1), (m2, s2) = POSITIVE, NEGATED
    eps, energy = eps_and_energy(points, [POSITIVE, NEGATED])
    rule = make_rule((Concept("a"), Concept("b", negate=True, beta=beta)), "product", 1.0)
    composed, _ = compose(rule, eps, energy)
    precision = (1 + beta) / s1 ** 2 - beta / s2 ** 2
    mean = [((1 + beta) * m1[i] / s1 ** 2 - beta * m2[i] / s2 ** 2) / precision for i in range(2)]
    torch.testing.assert_close(composed, gaussian_eps(points, mean, precision), rtol=1e-4, atol=1e-5)


def test_composable_diffusion_not_uses_the_unconditional_model(points):
    """'and' at scale 1: q1 (q_u / q2)^b, Gaussian with precision 1/s1^2 - b/s2^2 + b/s_u^2."""
    unconditional, beta = ((0.0, 0.0), 1.5), 0.8
    (m1, s1), (m2, s2), (mu, su) = POSITIVE, NEGATED, unconditional
    eps, energy = eps_and_energy(points, [unconditional, POSITIVE, NEGATED])
    rule = make_rule((Concept("a"), Concept("b", negate=True, beta=beta)), "and", 1.0)
    composed, _ = compose(rule, eps, energy)
    precision = 1 / s1 ** 2 - beta / s2 ** 2 + beta / su ** 2
    mean = [(m1[i] / s1 ** 2 - beta * m2[i] / s2 ** 2 + beta * mu[i] / su ** 2) / precision
            for i in range(2)]
    torch.testing.assert_close(composed, gaussian_eps(points, mean, precision), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale, beta", [(1.0, 1.0), (2.0, 0.5)])
def test_bounded_negation_is_the_squashed_ratio(points, scale, beta):
    """U* = scale [U1 + beta c tanh((U1 - U2) / c)], and eps* = sigma grad U*."""
    far = torch.cat([points, torch.tensor([[6.0, -5.0], [-8.0, 7.0]])])   # where U2 - U1 is huge
    eps, energy = eps_and_energy(far, [POSITIVE, NEGATED])
    rule = make_rule((Concept("a"), Concept("b", negate=True, beta=beta)), "product", scale, "bounded")
    assert rule.needs_energy
    composed_eps, composed_energy = compose(rule, eps, energy)
    x = far.clone().requires_grad_(True)
    u1, u2 = gaussian_energy(x, *POSITIVE), gaussian_energy(x, *NEGATED)
    expected = scale * (u1 + beta * NEGATION_BOUND * torch.tanh((u1 - u2) / NEGATION_BOUND))
    torch.testing.assert_close(composed_energy, expected.detach(), rtol=1e-5, atol=1e-5)
    grad = torch.autograd.grad(expected.sum(), x)[0]
    torch.testing.assert_close(composed_eps, SIGMA * grad, rtol=1e-4, atol=1e-5)
    # The bound: never more than scale * beta * c nats from the positive alone.
    gap = (composed_energy - scale * u1.detach()).abs()
    assert gap.max() <= scale * beta * NEGATION_BOUND + 1e-5
    ratio_rule = make_rule((Concept("a"), Concept("b", negate=True, beta=beta)), "product", scale)
    ratio, _ = compose(ratio_rule, eps, energy)
    assert (ratio - composed_eps).abs()[-2:].max() > 1.0      # far out, the ratio still pulls


def test_bounded_negation_needs_energies(points):
    eps, _ = eps_and_energy(points, [POSITIVE, NEGATED])
    rule = make_rule((Concept("a"), Concept("b", negate=True)), "product", 1.0, "bounded")
    with pytest.raises(ValueError, match="bounded form needs energies"):
        compose(rule, eps)


def test_bounded_negation_without_not_rows_is_the_plain_product(points):
    experts = [((-1.0, 0.5), 0.5), ((1.0, -0.5), 0.8)]
    eps, energy = eps_and_energy(points, experts)
    concepts = (Concept("a"), Concept("b", weight=2.0))
    plain = compose(make_rule(concepts, "product", 1.5), eps, energy)
    bounded = compose(make_rule(concepts, "product", 1.5, "bounded"), eps, energy)
    for a, b in zip(plain, bounded):
        torch.testing.assert_close(a, b)


def test_and_rounds_as_classifier_free_guidance_does():
    """One row at scale a is eps_u + a (eps_c - eps_u) in the pipelines' own order of
    operations, to the bit (a weighted sum (1 - a) eps_u + a eps_c rounds otherwise)."""
    eps = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0))
    for scale in (7.5, 5.0, 3.3):
        composed, _ = compose(make_rule((Concept("a"),), "and", scale), eps)
        assert torch.equal(composed, eps[0] + scale * (eps[1] - eps[0]))


def test_the_empty_row_is_left_out_only_where_one_row_is_its_own_prediction():
    """scale * w = 1 on one row: the pipelines' guidance 1, the row alone. With more rows
    "" stays, weightless or not: the conflict map measures their directions from it."""
    alone = make_rule((Concept("a"),), "and", 1.0)
    assert alone.texts == ("a",) and alone.unconditional is None
    assert torch.equal(compose(alone, torch.ones(1, 2, 3) * 0.3)[0], torch.ones(2, 3) * 0.3)
    for concepts, scale in (((Concept("a", weight=0.5), Concept("b", weight=0.5)), 1.0),
                            ((Concept("a"), Concept("b", negate=True, beta=0.5)), 2.0),
                            ((Concept("a"),), 2.0)):
        rule = make_rule(concepts, "and", scale)
        assert rule.texts[0] == "" and rule.unconditional == 0
