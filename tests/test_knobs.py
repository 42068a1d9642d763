"""The samplers' knobs are declared once (composer/knobs.py) and everything else derives
from that declaration: the recipe's fields, the moves' arguments, the page's labels,
the models' defaults and the docs table."""
import ast
import dataclasses
from pathlib import Path

import pytest

from composer.knobs import KNOBS, Knob, docs_rows, family_defaults
from composer.recipe import RANGES, Recipe, RecipeError, SamplerSpec
from composer.samplers import MCMCKnobs

ROOT = Path(__file__).resolve().parent.parent
NAMES = {k.name for k in KNOBS}
DECLARATION = ROOT / "composer" / "knobs.py"


def _knob_strings(nodes) -> int:
    return sum(isinstance(n, ast.Constant) and n.value in NAMES for n in nodes)


def listings(tree: ast.AST):
    """Places that list knobs by name: a tuple, list or set of two or more knob names, a
    dict or call naming three or more, a class with two or more knob fields."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and _knob_strings(node.elts) >= 2:
            yield node
        elif isinstance(node, ast.Dict) and _knob_strings(node.keys) >= 3:
            yield node
        elif isinstance(node, ast.Call) and sum(k.arg in NAMES for k in node.keywords) >= 3:
            yield node
        elif isinstance(node, ast.ClassDef) and sum(
                isinstance(s, ast.AnnAssign) and getattr(s.target, "id", None) in NAMES
                for s in node.body) >= 2:
            yield node


def test_no_knob_is_declared_outside_the_declaration():
    sources = [ROOT / "app.py", *[p for d in ("composer", "ui", "benchmarks", "scripts")
                                  for p in (ROOT / d).rglob("*.py")]]
    found = [f"{path.relative_to(ROOT)}:{node.lineno}"
             for path in sources if path != DECLARATION
             for node in listings(ast.parse(path.read_text(), str(path)))]
    assert not found, f"knobs listed outside composer/knobs.py: {found}"


def test_the_scan_finds_a_second_declaration():
    code = ('LABELS = {"mcmc_steps": "a", "step_size": "b", "damping": "c"}\n'
            'ORDER = ("leapfrog_steps", "line_points")\n'
            'class Spec:\n    mcmc_steps: int\n    damping: float\n')
    assert len(list(listings(ast.parse(code)))) == 3


def test_the_recipe_moves_and_ranges_follow_the_declaration():
    fields = [f.name for f in dataclasses.fields(SamplerSpec)]
    assert fields == ["name", "scheduler", *(k.name for k in KNOBS)]
    assert [f.name for f in dataclasses.fields(MCMCKnobs)] == ["step", *(k.name for k in KNOBS if k.moves)]
    assert all(RANGES[k.name] == (k.low, k.high) for k in KNOBS)


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: k.name)
def test_each_knob_is_validated_by_its_declaration(knob: Knob):
    sampler = knob.only[0] if knob.only else "hmc"
    Recipe(concepts=({"text": "red circle"},), sampler={"name": sampler, knob.name: knob.high})
    with pytest.raises(RecipeError, match=rf"sampler\.{knob.name}"):
        SamplerSpec(name=sampler, **{knob.name: knob.high + 1})
    if knob.integer:
        with pytest.raises(RecipeError, match=rf"sampler\.{knob.name}"):
            SamplerSpec(name=sampler, **{knob.name: knob.low + 0.5})
    if knob.only:
        with pytest.raises(RecipeError, match=f"{knob.name} are the"):
            SamplerSpec(name="hmc", **{knob.name: knob.high})


def test_page_labels_and_model_defaults_come_from_the_declaration():
    from composer.models.shapes import ShapesModel
    from composer.models.toy2d import Toy2DModel
    from ui import state
    assert all(state.FIELD_LABELS[f"sampler.{k.name}"] == k.label for k in KNOBS)
    assert {k.label for k in KNOBS if k.integer} <= state.WHOLE_NUMBER_LABELS
    for model, family in ((Toy2DModel, "toy2d"), (ShapesModel, "shapes")):
        assert {k: model.defaults[k] for k in NAMES} == family_defaults(family)


def test_docs_table_is_the_declaration():
    """docs/recipe.md's knob rows are what `composer.knobs.docs_rows` prints."""
    docs = (ROOT / "docs" / "recipe.md").read_text().splitlines()
    missing = [row for row in docs_rows() if row not in docs]
    assert not missing, "paste these rows (python -c 'from composer.knobs import docs_rows; " \
                        f"print(*docs_rows(), sep=chr(10))') into docs/recipe.md: {missing}"


def test_a_new_knob_is_one_declaration(monkeypatch):
    """A knob added to KNOBS reaches the recipe's schema, its defaults and its JSON: a
    fresh copy of the recipe module, built from the longer declaration alone."""
    import importlib.util
    import sys

    import composer.knobs
    import composer.recipe
    target = Knob("target_acceptance", "Target acceptance", "what 'auto' aims at", 0, 1,
                  only=("mala", "hmc"), moves=False, always_written=False, default=0.6)
    monkeypatch.setattr(composer.knobs, "KNOBS", (*KNOBS, target))
    monkeypatch.setattr(composer.knobs, "BY_NAME", {**composer.knobs.BY_NAME, target.name: target})
    spec = importlib.util.spec_from_file_location("recipe_with_a_new_knob", composer.recipe.__file__)
    recipe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, recipe)
    spec.loader.exec_module(recipe)
    assert recipe.SamplerSpec(name="hmc", target_acceptance=0.7).target_acceptance == 0.7
    with pytest.raises(recipe.RecipeError, match="sampler.target_acceptance"):
        recipe.SamplerSpec(name="hmc", target_acceptance=2.0)
    with pytest.raises(recipe.RecipeError, match="target_acceptance are the mala/hmc"):
        recipe.SamplerSpec(name="ula", target_acceptance=0.5)
    filled = recipe.Recipe(concepts=({"text": "a"},), sampler="mala").with_defaults(
        {"scale": 1.0, "steps": 10})
    assert filled.sampler.target_acceptance == 0.6
    assert "target_acceptance" in recipe.recipe_json_schema()["$defs"]["SamplerSpec"]["properties"]
    unset = recipe.Recipe(concepts=({"text": "a"},), sampler="ddim").to_dict()
    assert "target_acceptance" not in unset["sampler"]      # older links stay the same
