"""Recipe schema: round trips and clear errors that name the field."""
import json

import pytest

from composer.recipe import MAX_CONCEPTS, Concept, Recipe, RecipeError, SamplerSpec

GOOD = {
    "model": "toy2d-energy",
    "concepts": [{"text": "ring"}, {"text": "bar", "weight": 2.0},
                 {"text": "small_box", "negate": True, "beta": 0.5}],
    "operator": "product",
    "sampler": {"name": "hmc", "mcmc_steps": 4, "step_size": 0.2},
    "steps": 20, "seed": 7, "num_samples": 100,
}


def test_negation_form_defaults_to_the_ratio_and_round_trips():
    assert Recipe.from_dict(GOOD).negation == "ratio"       # recipes from before the field
    bounded = Recipe.from_dict({**GOOD, "negation": "bounded"})
    assert Recipe.from_json(bounded.to_json()).negation == "bounded"


def test_json_round_trip():
    recipe = Recipe.from_dict(GOOD)
    again = Recipe.from_json(recipe.to_json())
    assert again == recipe
    assert json.loads(again.to_json()) == recipe.to_dict()
    assert recipe.concepts[2] == Concept("small_box", 1.0, True, 0.5)


def test_defaults_fill_only_missing_fields():
    recipe = Recipe.from_dict(GOOD).with_defaults(
        {"scale": 1.0, "steps": 50, "mcmc_steps": 1, "step_size": 0.9, "leapfrog_steps": 3,
         "damping": 0.5, "line_points": 5})
    assert recipe.steps == 20 and recipe.scale == 1.0
    assert recipe.sampler == SamplerSpec("hmc", "ddpm", 4, 0.2, 3, 0.5, 5)


def with_changes(**changes):
    data = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target, *keys = path.split("__")
        node = data
        keys = [target] + keys
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[keys[-1]] = value
    return data


@pytest.mark.parametrize("changes,message", [
    ({"steps": 0}, r"steps: must be in \[1, 1000\], got 0"),
    ({"steps": -3}, "steps: must be in"),
    ({"steps": 2.5}, "steps: must be an integer"),
    ({"seed": float("nan")}, "seed: must be an integer"),
    ({"scale": float("nan")}, "scale: must be a finite number, got nan"),
    ({"scale": float("inf")}, "scale: must be a finite number, got inf"),
    ({"concepts__1__weight": float("nan")}, r"concepts\[1\].weight: must be a finite number"),
    ({"concepts__1__weight": 99}, r"concepts\[1\].weight: must be in \[0, 10\]"),
    ({"concepts__2__beta": -1}, r"concepts\[2\].beta: must be in"),
    ({"concepts__0__text": "  "}, r"concepts\[0\].text: is empty"),
    ({"concepts__0__negate": "yes"}, r"concepts\[0\].negate: must be true or false"),
    ({"sampler__name": "rk4"}, "sampler.name: must be one of ddpm, ddim, euler, euler_ancestral, dpmpp, ula, uhmc, mala, hmc"),
    ({"sampler__step_size": 0}, r"sampler.step_size: must be in \(0, 2\]"),
    ({"sampler__damping": 1.5}, "sampler.damping: must be in"),
    ({"operator": "or"}, "operator: must be one of and, product, mixture"),
    ({"negation": "clip"}, "negation: must be one of ratio, bounded; got 'clip'"),
    ({"operator": "and", "negation": "bounded"},
     "negation: 'bounded' is a form of the product operator's NOT"),
    ({"num_samples": 0}, "num_samples: must be in"),
    ({"version": 2}, "version: this app reads version 1"),
    ({"colour": "red"}, "colour: unknown field; allowed fields are"),
    ({"concepts__0__weigth": 1}, r"concepts\[0\].weigth: unknown field"),
])
def test_bad_fields_are_named(changes, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict(with_changes(**changes))


def test_too_many_concepts():
    data = dict(GOOD, concepts=[{"text": "ring"}] * (MAX_CONCEPTS + 1))
    with pytest.raises(RecipeError, match=f"concepts: at most {MAX_CONCEPTS} rows"):
        Recipe.from_dict(data)


def test_negation_alone_is_explained():
    data = dict(GOOD, concepts=[{"text": "ring", "negate": True}])
    with pytest.raises(RecipeError, match="NOT needs at least one positive"):
        Recipe.from_dict(data)


def test_all_rows_muted_is_refused():
    data = dict(GOOD, concepts=[{"text": "ring", "muted": True}])
    with pytest.raises(RecipeError, match="at least one concept that is not muted"):
        Recipe.from_dict(data)


def test_mixture_with_negation_is_refused():
    with pytest.raises(RecipeError, match="mixture takes no NOT rows"):
        Recipe.from_dict(dict(GOOD, operator="mixture"))


@pytest.mark.parametrize("text", ["{", "[1, 2]", '"hello"', b"\xff\xfe"])
def test_corrupt_json_is_one_clear_error(text):
    with pytest.raises(RecipeError, match="recipe"):
        Recipe.from_json(text)


@pytest.mark.parametrize("changes,field,stored", [
    ({"seed": 1.0}, "seed", 1), ({"steps": 5.0}, "steps", 5), ({"num_samples": 2.0}, "num_samples", 2),
    ({"sampler__mcmc_steps": 3.0}, "sampler.mcmc_steps", 3),
    ({"sampler__leapfrog_steps": 2.0}, "sampler.leapfrog_steps", 2),
    ({"sampler__line_points": 4.0}, "sampler.line_points", 4),
    ({"concepts__0__weight": 2}, "concepts.0.weight", 2.0),
])
def test_validation_keeps_the_checked_types(changes, field, stored):
    """1.0 in an integer field is stored as the int 1, so nothing downstream sees a float."""
    recipe = Recipe.from_dict(with_changes(**changes))
    value = recipe
    for part in field.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    assert value == stored and type(value) is type(stored)


@pytest.mark.parametrize("changes,message", [
    ({"version": True}, "version: must be an integer, got True"),
    ({"seed": True}, "seed: must be an integer, got True"),
    ({"concepts__0__weight": False}, r"concepts\[0\].weight: must be a finite number"),
    ({"sampler__name": ["hmc"]}, "sampler.name: must be one of"),
    ({"model": "x" * 10_000}, "model: longer than 400 characters"),
])
def test_booleans_are_not_numbers_and_long_values_are_refused(changes, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict(with_changes(**changes))


def test_all_zero_weights_are_refused():
    data = with_changes(concepts__0__weight=0, concepts__1__weight=0)
    with pytest.raises(RecipeError, match="every AND weight is 0"):
        Recipe.from_dict(data)


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "recipe: larger than 64 kB"),
    ("[" * 30_000, "recipe: nested too deeply|not valid JSON"),
    ('{"seed": ' + "9" * 5000 + "}", "recipe: not valid JSON"),
    (b"\x9e\x80{}", "recipe: not UTF-8 text"),
])
def test_from_json_turns_every_failure_into_a_recipe_error(text, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_json(text)


def test_byte_order_mark_is_accepted():
    body = json.dumps(GOOD)
    assert Recipe.from_json(b"\xef\xbb\xbf" + body.encode()) == Recipe.from_dict(GOOD)
    assert Recipe.from_json("\ufeff" + body) == Recipe.from_dict(GOOD)


@pytest.mark.parametrize("data", [{1: 2}, {"a\nb": 1}, {"x" * 5000: 1}])
def test_unknown_field_names_are_escaped_and_short(data):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data)
    message = str(err.value)
    assert "\n" not in message and len(message) < 300 and "unknown field" in message


def test_echoed_values_are_cut_short():
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(with_changes(sampler__name="evil\n" * 1000))
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
