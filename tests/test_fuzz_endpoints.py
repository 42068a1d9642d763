"""Adversarial values of every declared type sent to /render, /sweep and /compare
through gradio_client: each gets a clear error or a result, and the server (in this
process) prints no traceback. FUZZ_EXAMPLES sets the example count (CI: a few;
locally, e.g. FUZZ_EXAMPLES=300)."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from ui.stack import GENERIC_ERROR

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
SMALL = {"model": "toy2d-energy", "concepts": [{"text": "ring"}], "steps": 2, "num_samples": 4,
         "sampler": "ddim"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30),
                    st.just(10 ** 400), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "nope", "NaN", "1e999", "true", "false", "0", "-1", "3.7",
                                     "ddim", "[]", "{}", "null"]),
                    st.text(max_size=30))
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def mutated_recipe(data):
    """A small valid recipe with one field replaced by junk, as JSON text."""
    recipe = json.loads(json.dumps(SMALL))
    key = data.draw(st.sampled_from(["model", "concepts", "steps", "num_samples", "sampler", "seed",
                                     "scale", "operator", "version", "extra"]))
    recipe[key] = data.draw(junk)
    try:
        return json.dumps(recipe)
    except (TypeError, ValueError):
        return str(recipe)


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client
    return Client(app_url, verbose=False)


ANSWER_SECONDS = 120     # a hung server fails the test instead of passing it


def outcome(client, *args, api_name):
    """None for a result, else the text of the error the server answered with. Only an
    answer counts: a connection error, a timeout or a dead server raises, and fails the
    test that asked."""
    from gradio_client.exceptions import AppError
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError):       # NaN outside a string: no JSON client can send it
        reject()
    try:
        client.submit(*args, api_name=api_name).result(timeout=ANSWER_SECONDS)
        return None
    except AppError as err:       # the server refused the input, in words
        return str(err)


def assert_clear(message, capfd):
    printed = capfd.readouterr().err
    assert "Traceback" not in printed, printed[-3000:]
    if message is not None:
        assert GENERIC_ERROR not in message, message


def inputs(data):
    """A recipe argument: junk of any type, or a small recipe with one field junk."""
    return mutated_recipe(data) if data.draw(st.booleans()) else data.draw(junk)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(data=st.data())
def test_render_fuzz(client, capfd, data):
    recipe = inputs(data)
    frames, maps = data.draw(junk), data.draw(junk)
    assert_clear(outcome(client, recipe, frames, maps, api_name="/render"), capfd)


@FUZZ
@given(data=st.data())
def test_sweep_fuzz(client, capfd, data):
    recipe = inputs(data)
    fields = [data.draw(st.one_of(junk, st.sampled_from(["seed", "scale", "concepts[1].weight"])))
              for _ in range(2)]
    values = [data.draw(st.one_of(junk, st.sampled_from(["0, 1", "0:1:2", "1e400:1:2", "", "a"])))
              for _ in range(2)]
    assert_clear(outcome(client, recipe, fields[0], values[0], fields[1], values[1],
                         api_name="/sweep"), capfd)


@FUZZ
@given(data=st.data())
def test_compare_fuzz(client, capfd, data):
    recipe = inputs(data)
    samplers = data.draw(st.one_of(junk, st.lists(st.sampled_from(["ddim", "ula", "nope", "hmc"]),
                                                  max_size=5)))
    models = data.draw(st.one_of(junk, st.lists(st.sampled_from(["toy2d-energy", "nope"]), max_size=2)))
    assert_clear(outcome(client, recipe, samplers, data.draw(junk), models, api_name="/compare"), capfd)


def test_the_probes_of_the_report(client, capfd):
    """The cases the probe listed, one by one."""
    for recipe in (None, 5):
        message = outcome(client, recipe, 8, False, api_name="/render")
        assert message and "must be JSON text" in message
    message = outcome(client, json.dumps(SMALL), ["nope", "ddim"], False, api_name="/compare")
    assert message and "nope" in message and "ddim" in message
    huge = outcome(client, json.dumps(SMALL), "scale", "0:1" + "0" * 400 + ":3", "", "",
                   api_name="/sweep")
    assert huge is None or GENERIC_ERROR not in huge
    for off in ("false", "0", False):
        assert client.predict(json.dumps(SMALL), 2, off, api_name="/render")["maps"] == []
    assert client.predict(json.dumps(SMALL), 2, "true", api_name="/render")["maps"]
    assert_clear(None, capfd)


def test_a_dead_server_fails_the_fuzzer():
    """The fuzzer can fail: against a server that has stopped, `outcome` raises rather
    than reporting a clear refusal."""
    from gradio_client import Client

    from composer.facade import Composer
    from tests.conftest import UI_MODEL, free_port
    from ui.layout import build_demo, launch_kwargs

    demo = build_demo(Composer("cpu"), default_model=UI_MODEL)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), ssr_mode=False,
                            prevent_thread_lock=True, quiet=True, **launch_kwargs())
    client = Client(url, verbose=False)
    assert outcome(client, json.dumps(SMALL), 2, False, api_name="/render") is None
    demo.close()
    with pytest.raises(Exception) as raised:
        outcome(client, json.dumps(SMALL), 2, False, api_name="/render")
    from gradio_client.exceptions import AppError
    assert not isinstance(raised.value, AppError)
