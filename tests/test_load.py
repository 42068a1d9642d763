"""The app under a crowd, through gradio_client: concurrent users get what they
would get alone, a small job is not held behind a large one, and memory levels off
is bounded by compression and a shared budget. (Cancellation: test_ui_client.py;
the app's RSS over 100 sessions: benchmarks/load.py, since in a shared test process
RSS also moves with everything the suite ran before.)"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

SMALL = {"model": "toy2d-energy", "operator": "product",
         "concepts": [{"text": "ring"}, {"text": "bar"}],
         "sampler": {"name": "ddim"}, "steps": 6, "seed": 3, "num_samples": 64}
LARGE = {**SMALL, "sampler": {"name": "hmc", "mcmc_steps": 50, "leapfrog_steps": 20},
         "steps": 3, "num_samples": 900}          # about 20 s of CPU here


@pytest.fixture(scope="module")
def connect(app_url):
    from gradio_client import Client
    return lambda: Client(app_url, verbose=False)


def test_eight_concurrent_users_get_what_they_would_alone(connect):
    recipes = [json.dumps({**SMALL, "seed": seed}) for seed in range(8)]
    alone = [connect().predict(r, 0, api_name="/render")["images"] for r in recipes]

    def user(k):
        client = connect()
        return [client.predict(recipes[k], 0, api_name="/render")["images"] for _ in range(2)]
    with ThreadPoolExecutor(8) as pool:
        crowd = list(pool.map(user, range(8)))
    for k in range(8):
        assert crowd[k] == [alone[k], alone[k]], f"user {k} got another picture in the crowd"


def test_a_small_job_is_not_held_behind_a_large_one(connect):
    """Runs take turns evaluation by evaluation: the small one ends first."""
    large = connect().submit(json.dumps(LARGE), 0, api_name="/render")
    deadline = time.time() + 30
    while large.status().code.name != "PROCESSING":
        assert time.time() < deadline, "the large job never started"
        time.sleep(0.1)
    small = connect().predict(json.dumps(SMALL), 0, api_name="/render")
    assert small["images"] and not large.done(), "the small job waited for the large one"
    large.cancel()


def test_a_session_keeps_its_frames_compressed():
    import numpy as np

    from composer.facade import Frame
    from ui.frames import kept_frame, unpacked
    rng = np.random.default_rng(0)
    scatter = np.full((256, 256, 3), 255, np.uint8)
    scatter[rng.integers(0, 256, 400), rng.integers(0, 256, 400)] = (31, 119, 180)
    kept = kept_frame(Frame(0, 1, 1.0, scatter, scatter, (scatter, scatter), None))
    size = len(kept["preview"]) + len(kept["noisy"]) + sum(map(len, kept["concepts"]))
    assert size < 4 * scatter.nbytes / 20 and kept["map"] is None
    assert np.array_equal(unpacked(kept["concepts"][1]), scatter)      # lossless


def test_all_sessions_frames_share_one_budget():
    """Past the budget the oldest finished run's frames go first; the newest run keeps
    its own, and a run still streaming is never cut (its frame k must stay step k)."""
    from ui.frames import KeptFrames, Run
    frame = {"preview": b"x" * 100, "noisy": b"x" * 100, "concepts": [b"x" * 50],
             "map": None, "concept_maps": []}
    kept = KeptFrames(budget=1000)
    streaming = Run()
    kept.keep(streaming, frame)
    old, new = Run(), Run()
    old.end()
    for _ in range(2):
        kept.keep(old, frame)
    kept.keep(new, frame)
    assert len(old.frames) == 2 and not old.released             # 1,000 bytes: at it
    kept.keep(new, frame)
    assert old.frames == () and old.released and len(new.frames) == 2
    kept.keep(old, frame)                          # a released run takes no more frames
    assert old.frames == ()
    assert len(streaming.frames) == 1 and not streaming.released
    streaming.end()
    dropped = Run()
    dropped.end()
    for _ in range(2):
        kept.keep(dropped, frame)                  # over: the streaming run, now ended, goes
    assert streaming.frames == () and streaming.released
    del dropped                                    # its session moved on: not counted
    for _ in range(2):
        kept.keep(new, frame)
    assert len(new.frames) == 4                    # 1,000 bytes, all of them its own


def test_a_stopped_run_keeps_the_frames_it_had_when_stopped():
    """Stop fixes the frame count: the run's thread may finish one more step before it
    sees the cancel, and that frame used to make the label say "Frame 6 / 7" on a
    slider whose maximum was 6."""
    from ui.frames import KeptFrames, Run
    frame = {"preview": b"x", "noisy": b"x", "concepts": [], "map": None, "concept_maps": []}
    kept, live = KeptFrames(budget=10_000), Run()
    for _ in range(6):
        kept.keep(live, frame)
    assert live.stop() == 6
    kept.keep(live, frame)                         # the step that was already computing
    assert len(live.frames) == 6


def test_a_runs_frames_hold_under_threads_adding_stopping_and_releasing():
    """The run's thread adds frames while Stop (another request) and the budget (another
    session's run) end or free them: it was a dict written partly outside any lock."""
    import threading
    from ui.frames import KeptFrames, Run
    frame = {"preview": b"x" * 10, "noisy": b"x" * 10, "concepts": [], "map": None,
             "concept_maps": []}
    for trial in range(20):
        kept, runs = KeptFrames(budget=2_000), [Run(labels=(f"run {k}",)) for k in range(4)]
        counts, start = {}, threading.Barrier(len(runs) + 1)

        def stream(run: Run) -> None:
            start.wait()
            for _ in range(200):
                kept.keep(run, frame)
            run.end(done=True)

        def stop() -> None:
            start.wait()
            counts["stopped"] = runs[0].stop()
        threads = [threading.Thread(target=stream, args=(r,)) for r in runs] + [
            threading.Thread(target=stop)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(runs[0].frames) in (0, counts["stopped"]), trial   # fixed, or freed after
        for run in runs:
            assert run.done and run.ended
            if run.released:
                assert run.frames == (), trial                         # freed means empty
            elif run is not runs[0]:
                assert len(run.frames) == 200, trial                   # no frame lost


def test_a_picture_sent_twice_is_written_once(tmp_path, monkeypatch):
    """Gradio rewrites an array's content-named file each time the same picture is sent,
    truncating it under a browser still downloading it ("Too little data for declared
    Content-Length", an empty preview). Ours are written once and then only touched."""
    import os

    import numpy as np

    from ui import files
    monkeypatch.setattr(files, "PICTURES_DIR", tmp_path)
    picture = np.zeros((8, 8, 3), np.uint8)
    first = files.picture_file(picture)
    inode, size = os.stat(first).st_ino, os.path.getsize(first)
    with open(first, "rb") as reading:            # a download in progress
        again = files.picture_file(picture)
        assert again == first and os.stat(again).st_ino == inode
        assert len(reading.read()) == size
    other = files.picture_file(picture + 1)
    assert other != first and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {os.path.basename(first), os.path.basename(other)})
