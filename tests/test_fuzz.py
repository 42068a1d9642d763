"""Property-based fuzzing of the recipe schema through validation, checking and sampling.

Every outcome must be a RecipeError / ComposerError with a one-line message, or a
finite result. CI runs the "ci" profile (about 500 examples); run the "deep"
profile locally with `HYPOTHESIS_PROFILE=deep pytest tests/test_fuzz.py`.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.facade import Composer, ComposerError
from composer.recipe import Recipe, RecipeError

settings.register_profile("ci", max_examples=500, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ADVERSARIAL = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from([1.0, 2.0, 0.5, -0.0, 1e308, "1", "ring", "a\nb", [], {}, [1], {"a": 1}]))
SMALL_INT = st.one_of(st.integers(min_value=0, max_value=6), st.sampled_from([1.0, 2.0, 3.0]))


def field(good):
    return st.one_of(good, ADVERSARIAL)


concept = st.fixed_dictionaries({"text": field(st.sampled_from(["ring", "bar", "big_box", "small_box",
                                                                 "left_bar", "right_bar", "cat", ""]))},
                                 optional={"weight": field(st.floats(0, 10)),
                                           "negate": field(st.booleans()),
                                           "beta": field(st.floats(0, 10)),
                                           "muted": field(st.booleans())})
sampler = st.fixed_dictionaries({}, optional={
    "name": field(st.sampled_from(["ddpm", "ddim", "euler", "euler_ancestral", "dpmpp",
                                   "ula", "uhmc", "mala", "hmc"])),
    "mcmc_steps": field(SMALL_INT), "step_size": field(st.floats(0.01, 2)),
    "leapfrog_steps": field(st.integers(1, 4)), "damping": field(st.floats(0, 1)),
    "line_points": field(st.integers(2, 6))})
known = st.fixed_dictionaries(
    {"model": field(st.sampled_from(["toy2d-energy", "toy2d-score"]))},
    optional={"concepts": field(st.lists(concept, max_size=9)),
              "operator": field(st.sampled_from(["and", "product", "mixture"])),
              "scale": field(st.floats(0, 50)), "sampler": field(sampler),
              "steps": field(st.integers(1, 6)), "seed": field(st.integers(0, 2**32 - 1)),
              "num_samples": field(st.integers(1, 16)), "version": field(st.just(1))})
unknown = st.dictionaries(st.text(max_size=8), ADVERSARIAL, max_size=1)
recipe_dict = st.one_of(known, st.tuples(known, unknown).map(lambda pair: {**pair[1], **pair[0]}))


@pytest.fixture(scope="module")
def composer():
    return Composer("cpu")


@given(data=recipe_dict)
def test_any_recipe_is_an_error_or_a_finite_result(composer, data):
    try:
        recipe = Recipe.from_dict(data)
        result = composer.render(recipe)
    except (RecipeError, ComposerError) as err:
        assert "\n" not in str(err) and len(str(err)) < 600
        return
    assert np.isfinite(result.points).all()
    assert Recipe.from_json(result.recipe.to_json()) == result.recipe


@given(text=st.one_of(st.binary(max_size=300), st.text(max_size=300),
                      st.builds(json.dumps, recipe_dict)))
def test_any_json_text_is_a_recipe_or_a_recipe_error(text):
    try:
        recipe = Recipe.from_json(text)
    except RecipeError as err:
        assert "\n" not in str(err)
        return
    assert all(math.isfinite(c.weight) for c in recipe.concepts)
