"""The app under a crowd, measured through gradio_client against the real app.

    python -m benchmarks.load [--sessions 100] [--runs 3] [--parts latency,small,crowd,cancel,memory]

Starts the app in a process of its own on toy2d-energy and measures, through
gradio_client from this one, side by side in one run:
  - latency: one user alone, then 8 concurrent users x 3 renders (p50 / p95);
  - a small job alone, and the same job submitted while the largest job the
    budget allows is computing (its wait), next to that large job's own time;
  - the same small job while 8 clients each hold the largest allowed job (target:
    at most 10x its time alone), and the time until all 8 large jobs have finished;
  - a cancel: seconds from the cancel until the app's process is idle (/render,
    /generate);
  - memory and disk: the app's resident set size, and the bytes in its Gradio cache
    (streamed frames, GIFs, PNGs), every 10 sessions over `--sessions` sessions of
    `--runs` streamed /generate runs each; at sessions 25, 50 and 75 one run is the
    largest allowed shapes run (DDIM, 1000 steps, 16 samples). The disk budget is
    lowered to DISK_MB so that the run reaches it and the curve shows the cap.
Prints JSON and writes benchmarks/results/load.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMALL = {"model": "toy2d-energy", "operator": "product",
         "concepts": [{"text": "ring"}, {"text": "bar"}],
         "sampler": {"name": "ddim"}, "steps": 6, "seed": 3, "num_samples": 64}
# The largest toy2d job: 10 HMC levels of 1,001 evaluations, 2 rows x 495 samples,
# 9.9 M of the 10 M evaluations one run may use.
LARGEST = {**SMALL, "sampler": {"name": "hmc", "mcmc_steps": 50, "leapfrog_steps": 20},
           "steps": 10, "num_samples": 495}
SESSION_RUN = {**SMALL, "steps": 20, "num_samples": 100}
# The frames budget of all sessions (128 MB by default), lowered so that 100 sessions
# reach it and the memory curve shows the cap at work.
FRAMES_MB = 16
DISK_MB = 128
LARGEST_SHAPES = {"model": "shapes", "concepts": [{"text": "red circle"}], "sampler": {"name": "ddim"},
                  "steps": 1000, "seed": 0, "num_samples": 16}
HEAVY_CLIENTS = 8


SERVER = ("from composer.facade import Composer\n"
          "from ui.layout import build_demo, launch_kwargs\n"
          "build_demo(Composer('cpu'), default_model={model!r}).launch(\n"
          "    server_name='127.0.0.1', server_port={port}, ssr_mode=False, quiet=True,\n"
          "    **launch_kwargs())\n")


class Server:
    """The app in a process of its own, so its memory and CPU time are its own."""

    def __init__(self, model: str = "toy2d-energy"):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        self.cache = Path(tempfile.mkdtemp(prefix="load-cache-"))
        self.process = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port, model=model)],
                                        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                       "COMPOSER_FRAMES_MB": str(FRAMES_MB),
                                                       "COMPOSER_DISK_MB": str(DISK_MB),
                                                       "GRADIO_TEMP_DIR": str(self.cache)})
        deadline = time.time() + 300      # start-up renders the landing example
        while True:
            try:
                urllib.request.urlopen(self.url + "config", timeout=2)
                return
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the app did not start")
                time.sleep(0.5)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_rate(self, window: float) -> float:
        cpu, wall = self.cpu_seconds(), time.perf_counter()
        time.sleep(window)
        return (self.cpu_seconds() - cpu) / (time.perf_counter() - wall)

    def disk_mb(self) -> float:
        total = 0
        for root, _, names in os.walk(self.cache):
            for name in names:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
        return total / 2**20

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        shutil.rmtree(self.cache, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_render(client, recipe: dict) -> float:
    start = time.perf_counter()
    client.predict(json.dumps(recipe), 0, api_name="/render")
    return time.perf_counter() - start


def latency(connect) -> dict:
    client = connect()
    timed_render(client, SMALL)                                   # warm
    alone = [timed_render(client, SMALL) for _ in range(8)]

    def user(seed):
        c = connect()
        return [timed_render(c, {**SMALL, "seed": seed}) for _ in range(3)]
    with ThreadPoolExecutor(8) as pool:
        crowd = [s for times in pool.map(user, range(8)) for s in times]
    return {"alone_p50_s": statistics.median(alone),
            "crowd_8x3_p50_s": statistics.median(crowd), "crowd_8x3_p95_s": percentile(crowd, 0.95),
            "crowd_p50_over_alone": statistics.median(crowd) / statistics.median(alone)}


def small_behind_largest(connect, server: Server) -> dict:
    client = connect()
    start = time.perf_counter()
    client.predict(json.dumps(LARGEST), 0, api_name="/render")
    largest_alone = time.perf_counter() - start
    small_alone = statistics.median(timed_render(client, SMALL) for _ in range(5))
    large = connect().submit(json.dumps(LARGEST), 0, api_name="/render")
    while large.status().code.name != "PROCESSING":
        time.sleep(0.05)
    time.sleep(1.0)
    behind = timed_render(connect(), SMALL)
    large.cancel()
    while server.cpu_rate(0.25) > 0.2:
        pass
    return {"largest_job_alone_s": largest_alone, "small_alone_s": small_alone,
            "small_beside_largest_s": behind, "small_wait_over_alone": behind / small_alone}


def small_behind_crowd(connect, server: Server) -> dict:
    """HEAVY_CLIENTS clients each hold the largest allowed job; then a small job."""
    client = connect()
    small_alone = statistics.median(timed_render(client, SMALL) for _ in range(5))
    started = time.perf_counter()
    heavy = [connect().submit(json.dumps({**LARGEST, "seed": k}), 0, api_name="/render")
             for k in range(HEAVY_CLIENTS)]
    deadline = time.time() + 120
    while (sum(j.status().code.name == "PROCESSING" for j in heavy) < HEAVY_CLIENTS
           and time.time() < deadline):
        time.sleep(0.1)
    processing = sum(j.status().code.name == "PROCESSING" for j in heavy)
    time.sleep(2.0)
    behind = timed_render(connect(), SMALL)
    finished = 0
    for job in heavy:
        job.result(timeout=3600)
        finished += 1
    return {"heavy_clients": HEAVY_CLIENTS, "heavy_processing_when_small_sent": processing,
            "small_alone_s": small_alone, "small_behind_crowd_s": behind,
            "small_over_alone": behind / small_alone, "target_ratio": 10,
            "heavy_finished": finished, "heavy_all_finished_after_s": time.perf_counter() - started}


def cancel_to_idle(connect, server: Server, endpoint: str) -> float:
    second = 0 if endpoint == "/render" else False
    job = connect().submit(json.dumps(LARGEST), second, api_name=endpoint)
    while server.cpu_rate(0.25) < 0.5:
        pass
    job.cancel()
    cancelled = time.perf_counter()
    while server.cpu_rate(0.1) > 0.2:
        pass
    return time.perf_counter() - cancelled - 0.1


def memory(connect, server: Server, sessions: int, runs: int) -> dict:
    recipe = json.dumps(SESSION_RUN)
    samples = [{"sessions": 0, "rss_mb": round(server.rss_mb(), 1), "disk_mb": round(server.disk_mb(), 1)}]
    client = connect()
    peak_disk = 0.0
    for n in range(1, sessions + 1):
        client.reset_session()                  # a new visitor, as far as the app knows
        for k in range(runs):
            largest = n % 25 == 0 and n < 100 and k == 0
            client.predict(json.dumps(LARGEST_SHAPES) if largest else recipe, False,
                           api_name="/generate")
            peak_disk = max(peak_disk, server.disk_mb())
        if n % 10 == 0 or n % 25 == 0:
            samples.append({"sessions": n, "rss_mb": round(server.rss_mb(), 1),
                            "disk_mb": round(server.disk_mb(), 1)})
            print(samples[-1], file=sys.stderr, flush=True)
    half = len(samples) // 2
    return {"sessions": sessions, "runs_per_session": runs, "samples": samples,
            "growth_first_half_mb": samples[half]["rss_mb"] - samples[0]["rss_mb"],
            "growth_second_half_mb": samples[-1]["rss_mb"] - samples[half]["rss_mb"],
            "disk_budget_mb": DISK_MB, "disk_peak_after_a_run_mb": round(peak_disk, 1),
            "largest_shapes_run": LARGEST_SHAPES}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--parts", default="latency,small,crowd,cancel,memory")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/load.json"))
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    from gradio_client import Client
    server = Server()

    def connect():
        return Client(server.url, verbose=False)
    try:
        out = Path(args.out)
        result = json.loads(out.read_text()) if out.exists() else {}   # parts not run again stay
        result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "load_average_at_start": os.getloadavg()}
        if "latency" in parts:
            result["latency"] = latency(connect)
        if "small" in parts:
            result["small_job"] = small_behind_largest(connect, server)
        if "crowd" in parts:
            result["small_job_behind_crowd"] = small_behind_crowd(connect, server)
        if "cancel" in parts:
            result["cancel_to_idle_s"] = {e: cancel_to_idle(connect, server, e)
                                          for e in ("/render", "/generate")}
        if "memory" in parts:
            result["memory"] = memory(connect, server, args.sessions, args.runs)
        result["machine"]["load_average_at_end"] = os.getloadavg()
    finally:
        server.close()
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
