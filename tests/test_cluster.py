"""The cluster path (composer/cluster.py) on a local Ray cluster started here: a sweep
byte-identical to one process, runs spread over a pool of engines, Stop reaching the
engine, and a lost engine's cells rerun (docs/scaling.md)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.__main__ import main
from composer.cluster import CellFailed, RemoteComposer
from composer.facade import Cancelled, Composer, Frame, Result, SweepPlan
from composer.recipe import Recipe
from composer.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
TOY = {"model": "toy2d-energy", "concepts": [{"text": "ring"}, {"text": "bar"}], "operator": "product",
       "sampler": "ddpm", "steps": 4, "seed": 1, "num_samples": 50}
SWEEP = {"recipe": TOY, "axes": [{"field": "seed", "values": [1, 2]}, {"field": "steps", "values": [3, 5]}]}
# Cells of about a second each, so that an engine is killed while it has cells to do.
HEAVY_SWEEP = {"recipe": {**TOY, "sampler": "hmc", "steps": 20, "num_samples": 200},
               "axes": [{"field": "seed", "values": [1, 2, 3, 4]}]}
# Seconds of work per run; Stop ends it long before.
LONG = {**TOY, "sampler": {"name": "hmc", "mcmc_steps": 10, "leapfrog_steps": 10}, "steps": 100,
        "num_samples": 495}
WAIT_S = 120              # generous: a condition awaited, not a time asserted


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason="the cluster extra is not installed: pip install -e .[cluster]")
    # 4 logical CPUs: the shared pool's 2 engines, and 2 for the CLI's own pool.
    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def remote(ray):
    composer = RemoteComposer("auto", engines=2)
    yield composer
    composer.close()


def sweep_file(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    return str(path)


@contextlib.contextmanager
def one_thread():
    """This process on the engines' kind of device: one CPU thread each. (Samples and
    pictures are the same on any thread count; a metric's float can differ in its last
    digit, and one thread is also the faster on 2 cores beside the engines.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def wait_for(condition) -> None:
    deadline, pause = time.monotonic() + WAIT_S, threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come within the wait"
        pause.wait(0.05)


def test_frames_travel_in_batches_and_a_slow_models_at_once():
    """Frames a few milliseconds apart go together; a frame after BATCH_S since the last
    batch went, and the run's last frame, go at once (a slow model's previews are never
    a step late); then the Result."""
    from types import SimpleNamespace
    from composer.cluster import BATCH_S, batched
    now = [0.0]

    def run(gaps):
        for k, gap in enumerate(gaps):
            now[0] += gap                        # the time this frame took to compute
            yield SimpleNamespace(index=k, total=len(gaps))
        yield Result.__new__(Result)

    def sizes(gaps):
        return [len(b) if isinstance(b, list) else "result" for b in batched(run(gaps), lambda: now[0])]
    fast, slow = BATCH_S / 9.5, BATCH_S * 4                  # the tenth fast frame crosses BATCH_S
    assert sizes([fast] * 25) == [1, 10, 10, 4, "result"]       # the first at once, the last at once
    assert sizes([slow] * 4) == [1, 1, 1, 1, "result"]
    assert sizes([fast, fast, slow, fast]) == [1, 2, 1, "result"]


def test_the_default_install_and_the_app_do_not_import_ray():
    code = ("import sys, composer.facade, composer.cluster, composer.__main__, ui.layout, ui.service, "
            "benchmarks.shapes_eval, benchmarks.cluster; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_cluster_without_ray_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)            # `import ray` fails
    status = main(["sweep", sweep_file(tmp_path, SWEEP), "--out", str(tmp_path / "o"), "--cluster", "auto"])
    assert status == 2
    assert capsys.readouterr().err == "error: --cluster needs Ray: pip install -e .[cluster]\n"


def test_an_unreachable_cluster_is_one_clear_line(ray, tmp_path, monkeypatch, capsys):
    with socket.socket() as sock:                            # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    status = main(["sweep", sweep_file(tmp_path, SWEEP), "--out", str(tmp_path / "o"),
                   "--cluster", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith(f"error: --cluster: cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert err.count("\n") == 1


def test_a_sweep_on_the_cluster_writes_the_files_of_one_process_byte_for_byte(ray, remote, tmp_path, capsys):
    path = sweep_file(tmp_path, SWEEP)
    with one_thread():
        assert main(["sweep", path, "--out", str(tmp_path / "here")]) == 0
    here = capsys.readouterr().out
    assert main(["sweep", path, "--out", str(tmp_path / "there"), "--cluster", "auto"]) == 0
    there = capsys.readouterr().out
    assert here.replace("here", "there") == there            # cost and cells, in grid order
    names = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "there").iterdir())
    assert {"grid.png", "cells.json", "cell_2_2.png"} <= set(names)
    for name in names:
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name


def test_two_concurrent_runs_are_served_by_two_engines(remote):
    planned = remote.plan(Recipe.from_dict({**TOY, "steps": 20}))
    before = [s["completed"] for s in remote.pool.status()]
    first, second = remote.run(planned), remote.run(planned)
    next(first)                       # the first run holds an engine: the second goes to the other
    next(second)
    *_, one = first
    *_, two = second
    after = remote.pool.status()
    assert [s["completed"] - b for s, b in zip(after, before)] == [1, 1]
    assert len({s["pid"] for s in after}) == 2
    with one_thread():
        *frames, alone = Composer("cpu").run(planned)
    for result in (one, two):
        assert len(result.frames) == len(frames) == 20
        assert np.array_equal(result.points, alone.points)


def test_the_page_service_streams_its_runs_from_the_engines(remote):
    from ui.service import Service
    service = Service(remote)                    # as with COMPOSER_CLUSTER set
    assert service.info("toy2d-energy")["has_energy"]
    *frames, result = service.stream(Recipe.from_dict(TOY))
    assert len(frames) == 4 and all(isinstance(f, Frame) for f in frames)
    assert isinstance(result, Result) and all(a is b for a, b in zip(result.frames, frames))


def test_stop_cancels_the_remote_run_and_frees_its_engine(remote):
    planned = remote.plan(Recipe.from_dict(LONG))
    before = [s["completed"] for s in remote.pool.status()]
    cancel = threading.Event()
    stream = remote.run(planned, cancel)
    next(stream)
    cancel.set()                                             # Stop
    with pytest.raises(Cancelled):
        next(stream)
    wait_for(lambda: all(s["running"] == 0 for s in remote.pool.status()))
    assert [s["completed"] for s in remote.pool.status()] == before     # it ended early
    assert remote.pool.load == [0, 0]
    *_, result = remote.run(remote.plan(Recipe.from_dict(TOY)))           # the engine serves again
    assert result.points.shape == (50, 2)


def test_a_killed_engine_has_its_cells_rerun_and_the_sweep_is_unchanged(ray, remote):
    plan = Sweep.from_dict(HEAVY_SWEEP)
    planned = remote.sweep_plan(plan)
    cells = remote.cells(planned)
    got = [next(cells)]
    victim = max(range(2), key=lambda i: remote.pool.load[i])
    assert remote.pool.load[victim] > 0                      # it has cells still to hand back
    pid = remote.pool.status()[victim]["pid"]
    ray.kill(remote.pool.engines[victim], no_restart=False)  # Ray restarts it and reruns them
    got += list(cells)
    assert remote.pool.status()[victim]["pid"] != pid
    local = Composer("cpu")
    with one_thread():
        alone = list(local.sweep(local.sweep_plan(plan)))
    assert [c.position for c in got] == [c.position for c in alone]
    for cell, here in zip(got, alone):
        assert all(np.array_equal(a, b) for a, b in zip(cell.result.images, here.result.images))


def test_a_failing_cell_is_named_and_the_others_finish(remote):
    planned = remote.sweep_plan(Sweep.from_dict(SWEEP))
    (position, labels, broken), *_ = planned.cells[2:3]
    broken = dataclasses.replace(broken, recipe=dataclasses.replace(broken.recipe, model="no-such-model"))
    cells = list(planned.cells)
    cells[2] = (position, labels, broken)
    got = list(remote.cells(SweepPlan(planned.sweep, tuple(cells), planned.budget)))
    assert [type(c).__name__ for c in got] == ["SweepCell", "SweepCell", "CellFailed", "SweepCell"]
    assert isinstance(got[2], CellFailed) and got[2].name.startswith("cell (2, 1) ")
    assert "no-such-model" in got[2].error
