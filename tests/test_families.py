"""SDXL, SD3 and FLUX end to end, on tiny random pipelines saved to folders: the CLI,
the API's /render and the page's share link run a composition with a NOT row (SD3 and
FLUX on flow_euler; a typed folder on the default DDIM); a PNG's
own recipe renders the same picture again, byte for byte, and the API gives the CLI's
pixels."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composer.__main__ import main
from composer.media import recipe_from_png
from composer.models.tiny_sd import save_tiny_flux, save_tiny_sd3, save_tiny_sdxl
from composer.recipe import Concept, Recipe, SamplerSpec

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

SAVERS = {"sdxl": save_tiny_sdxl, "sd3": save_tiny_sd3, "flux": save_tiny_flux}


@pytest.fixture(scope="module", params=list(SAVERS))
def folder(request, tmp_path_factory):
    return SAVERS[request.param](tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}")


def composition(folder: str) -> Recipe:
    """AND with a NOT row; the flow models on their own sampler, flow_euler."""
    flow = Path(folder).name in ("tiny-sd3", "tiny-flux")
    return Recipe(model=str(folder), concepts=(Concept("a cat"), Concept("a dog", negate=True)),
                  sampler=SamplerSpec("flow_euler" if flow else "ddim"), steps=3, seed=2,
                  num_samples=2)


def test_the_cli_writes_pngs_whose_recipe_renders_the_same_picture(folder, tmp_path):
    first = tmp_path / "first.json"
    first.write_text(composition(folder).to_json())
    assert main(["render", str(first), "--out", str(tmp_path / "one")]) == 0
    carried = recipe_from_png(tmp_path / "one" / "image_00.png")
    assert carried.model == str(folder) and carried.concepts[1].negate
    again = tmp_path / "again.json"
    again.write_text(carried.to_json())
    assert main(["render", str(again), "--out", str(tmp_path / "two")]) == 0
    for name in ("image_00.png", "image_01.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_render_gives_the_clis_picture(folder, app_url, tmp_path):
    """The same recipe through the API and the CLI: the same pixels."""
    from gradio_client import Client
    recipe = composition(folder)
    out = Client(app_url, verbose=False).predict(recipe.to_json(), 2, api_name="/render")
    assert out["recipe"]["model"] == str(folder) and len(out["images"]) == 2
    path = tmp_path / "recipe.json"
    path.write_text(recipe.to_json())
    assert main(["render", str(path), "--out", str(tmp_path / "cli")]) == 0
    for i, uri in enumerate(out["images"]):
        served = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        written = Image.open(tmp_path / "cli" / f"image_{i:02d}.png").convert("RGB")
        assert np.array_equal(np.asarray(served), np.asarray(written))


@pytest.mark.browser
def test_a_folder_typed_into_the_model_box_loads_and_runs(folder, page, app_url):
    """The sampler menu offers flow_euler for the flow models only, and it runs there."""
    from composer.recipe import SAMPLER_LABELS
    from tests.browser import menu_options, pick, wait_shown, wait_text, watch
    flow_euler = SAMPLER_LABELS["flow_euler"]
    page.goto(app_url)
    wait_text(page, "#status", "Done: ")                       # the landing example
    assert flow_euler not in menu_options(page, "sampler")
    box = page.locator("#model input")
    box.fill(str(folder))
    box.press("Enter")
    wait_text(page, "#model-status", f"{folder} loaded")     # not the landing model's "loaded"
    flow = Path(folder).name in ("tiny-sd3", "tiny-flux")
    assert (flow_euler in menu_options(page, "sampler")) == flow
    if flow:
        pick(page, "sampler", flow_euler)
    page.locator("#concept-1 textarea").fill("a cat")
    watch(page)
    page.click("#generate")
    wait_shown(page, "Running…", then="Done: ")
    assert page.locator("#preview img").count() == 1


@pytest.mark.browser
def test_a_share_link_opens_each_family_in_the_page(folder, page, app_url):
    from tests.browser import share_url, wait_shown, wait_text, watch
    page.goto(share_url(app_url, composition(folder)))
    wait_text(page, "#status", "Press Generate")
    assert page.locator("#concept-2 textarea").input_value() == "a dog"
    watch(page)
    page.click("#generate")
    wait_shown(page, "Running…", then="Done: ")
    assert page.locator("#preview img").count() == 1
