"""Recipe schema: round trips and clear errors that name the field."""
import dataclasses
import json
import re
from pathlib import Path

import pytest

from composer.recipe import MAX_CONCEPTS, Concept, Recipe, RecipeError, SamplerSpec

ROOT = Path(__file__).resolve().parents[1]

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
    ({"sampler__name": "rk4"}, "sampler.name: must be one of ddpm, ddim, euler, euler_ancestral, dpmpp, flow_euler, ula, uhmc, mala, hmc"),
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


# --- strict schema (pydantic), best_of, the published JSON Schema ----------------------

@pytest.mark.parametrize("field", ["steps", "seed", "num_samples", "scale", "concepts__0__weight",
                                   "concepts__2__beta", "sampler__mcmc_steps", "sampler__step_size",
                                   "sampler__leapfrog_steps", "sampler__damping", "sampler__line_points"])
@pytest.mark.parametrize("value", [True, "3", [3]])
def test_numbers_are_not_booleans_strings_or_lists(field, value):
    path = field.replace("__", ".").replace(".0.", "[0].").replace(".2.", "[2].")
    with pytest.raises(RecipeError, match=rf"^{re.escape(path)}: must be (an integer|a finite number), got"):
        Recipe.from_dict(with_changes(**{field: value}))


@pytest.mark.parametrize("changes,message", [
    ({"concepts__0__negate": "true"}, r"concepts\[0\].negate: must be true or false"),
    ({"concepts__0__text": 5}, r"concepts\[0\].text: must be a string, got 5"),
    ({"sampler__bogus": 1}, "sampler.bogus: unknown field; allowed fields are name, scheduler"),
    ({"concepts__1__weight": float("-inf")}, r"concepts\[1\].weight: must be a finite number, got -inf"),
])
def test_no_field_converts_its_value(changes, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict(with_changes(**changes))


def test_best_of_is_off_by_default_and_left_out_of_the_json():
    """Links and PNGs made before the field stay byte-identical; a set value round-trips."""
    recipe = Recipe.from_dict(GOOD)
    assert recipe.best_of == 1 and "best_of" not in recipe.to_json()
    picky = Recipe.from_dict({**GOOD, "best_of": 4})
    assert json.loads(picky.to_json())["best_of"] == 4
    assert Recipe.from_json(picky.to_json()) == picky != recipe


@pytest.mark.parametrize("value,message", [
    (0, r"best_of: must be in \[1, 8\], got 0"), (9, r"best_of: must be in \[1, 8\], got 9"),
    (2.5, "best_of: must be an integer, got 2.5"), (True, "best_of: must be an integer, got True"),
])
def test_best_of_is_refused_outside_1_to_8(value, message):
    with pytest.raises(RecipeError, match=message):
        Recipe.from_dict({**GOOD, "best_of": value})


def test_the_json_is_written_as_before():
    assert Recipe.from_dict(GOOD).to_json(indent=None) == (
        '{"model": "toy2d-energy", "concepts": [{"text": "ring", "weight": 1.0, "negate": false, '
        '"beta": 1.0, "muted": false}, {"text": "bar", "weight": 2.0, "negate": false, "beta": 1.0, '
        '"muted": false}, {"text": "small_box", "weight": 1.0, "negate": true, "beta": 0.5, '
        '"muted": false}], "operator": "product", "negation": "ratio", "scale": null, "sampler": '
        '{"name": "hmc", "scheduler": "ddpm", "mcmc_steps": 4, "step_size": 0.2, '
        '"leapfrog_steps": null, "damping": null, "line_points": null}, "steps": 20, "seed": 7, '
        '"num_samples": 100, "version": 1}')


@pytest.mark.parametrize("path", sorted((ROOT / "assets" / "recipes").glob("*.json"))
                         + sorted((ROOT / "tests" / "data").glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_round_trips(path):
    recipe = Recipe.from_json(path.read_text())
    assert Recipe.from_json(recipe.to_json()) == recipe


def test_constructors_and_replace_validate_with_recipe_errors():
    """Every way of making a recipe validates it, and says so in a RecipeError."""
    recipe = Recipe.from_dict(GOOD)
    with pytest.raises(RecipeError, match=r"^steps: must be in \[1, 1000\], got 0"):
        dataclasses.replace(recipe, steps=0)
    with pytest.raises(RecipeError, match=r"^sampler.step_size: 'auto' .* needs mala or hmc; got 'ddim'"):
        dataclasses.replace(recipe.sampler, name="ddim", step_size="auto")
    with pytest.raises(RecipeError, match=r"text: is empty"):
        Concept(" ")
    with pytest.raises(RecipeError, match=r"concepts\[1\].beta: must be in \[0, 10\], got -2"):
        Recipe(concepts=({"text": "ring"}, {"text": "bar", "negate": True, "beta": -2}))


def test_docs_carry_the_generated_json_schema():
    """docs/recipe.md's copy is exactly what scripts/recipe_schema.py prints."""
    from composer.recipe import recipe_json_schema
    docs = (ROOT / "docs" / "recipe.md").read_text()
    copy = re.search(r"^## JSON Schema\n.*?^```json\n(.*?)^```$", docs, re.S | re.M)
    assert copy, "docs/recipe.md has no '## JSON Schema' section with a json block"
    generated = json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False) + "\n"
    assert copy.group(1) == generated, "run: python scripts/recipe_schema.py, paste into docs/recipe.md"
    assert recipe_json_schema()["properties"]["best_of"] == {
        "default": 1, "maximum": 8, "minimum": 1, "title": "Best Of", "type": "integer"}
