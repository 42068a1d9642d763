"""Runs on a Ray cluster: a pool of engines, one Ray actor per device, each holding a
Composer that keeps its models loaded between runs (docs/scaling.md).

- `RemoteComposer` is the Composer the app uses with COMPOSER_CLUSTER=auto|ADDRESS:
  the same interface, with every plan and run on an engine of the pool, the least
  loaded one. A run's frames stream back through a Ray streaming generator; a set
  `cancel` flag (Stop, a closed page, a vanished client) becomes `ray.cancel`, which
  the engine's run sees before its next network evaluation.
- `RemoteComposer.cells` spreads a planned sweep's cells over the pool (the CLI's
  `sweep --cluster`) and `EnginePool.map` any function's cells (the evaluation
  benchmark): results in grid order, a failing cell reported by name while the others
  finish, and the cells of a lost engine rerun once Ray has restarted it (actor
  `max_restarts`, task `max_task_retries`).

Ray is imported only when a pool is made: `pip install -e .[cluster]`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import pickle
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from composer.facade import Cancelled, Composer, ComposerError, Frame, Result, SweepCell, SweepPlan
from composer.plan import Plan
from composer.recipe import Recipe

CLUSTER_ENV = "COMPOSER_CLUSTER"
POLL_S = 0.1              # how often a waiting caller looks at its cancel flag
RETRIES = 3               # restarts of a lost engine, and reruns of its cells
BATCH_S = 0.05          # frames made within this of the last sent one travel as one item
RUNS_PER_ENGINE = 16      # runs one engine computes at once, sharing its device (engine.SharedDevice)
ENGINE_START_S = 120      # a pool whose engines find no free device by then is an error


class ClusterError(ComposerError):
    """Ray missing, a cluster that cannot be reached, or no free device for an engine."""


@dataclass(frozen=True)
class CellFailed:
    name: str             # which cell, in the caller's words
    error: str


def connect(address: str, what: str = "--cluster"):
    """Ray, connected to the cluster at `address` ('auto': the one RAY_ADDRESS or `ray
    start` on this machine names, else a new local one). The front end's COMPOSER_*
    settings (budgets, model cache, Stable Diffusion model) travel to the engines."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"{what} needs Ray: pip install -e .[cluster]") from None
    if ray.is_initialized():
        return ray
    if address != "auto":
        reachable(address, what)
    settings = {k: v for k, v in os.environ.items() if k.startswith("COMPOSER_") and k != CLUSTER_ENV}
    try:
        ray.init(address=None if address == "auto" else address, logging_level="ERROR",
                 runtime_env={"env_vars": settings} if settings else None)
    except Exception as err:  # noqa: BLE001 - Ray's many connection errors: one line each
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClusterError(f"{what}: cannot join the Ray cluster at {address!r}: {message}") from None
    return ray


def reachable(address: str, what: str) -> None:
    """A clear error at once for an address nothing listens on (Ray itself retries for
    minutes): 'HOST:PORT' or 'ray://HOST:PORT'."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{what}: give 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ClusterError(f"{what}: cannot reach the Ray cluster at {address} "
                           f"({err.strerror or err})") from None


def packed(item: Any) -> bytes:
    """An engine's answer for the wire (a batch of frames, a result). Pictures are mostly background:
    zlib's fastest level takes a toy2d frame from 787 KB to 16 KB in about a millisecond,
    small enough for Ray to pass inline rather than through its object store."""
    return zlib.compress(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL), 1)


def unpacked(blob: bytes) -> Any:
    return pickle.loads(zlib.decompress(blob))   # from this pool's own engines


def batched(run: Iterator[Frame | Result], clock: Callable[[], float] = time.perf_counter
            ) -> Iterator[list[Frame] | Result]:
    """A run's frames in lists, then its Result. Ray's cost is per item, and a small model
    makes a frame every few milliseconds: a frame goes at once when BATCH_S has passed
    since the last list went, and so does the run's last frame; the frames between wait
    in the list for those. So a slow model's frames each go at once, as they come."""
    batch, sent = [], -math.inf
    for item in run:
        if isinstance(item, Result):
            if batch:
                yield batch
            yield item
            return
        batch.append(item)
        if clock() - sent >= BATCH_S or item.index + 1 == item.total:
            yield batch
            batch, sent = [], clock()
    if batch:
        yield batch


class RayCancelFlag(threading.Event):
    """An engine run's cancel flag: set once Ray cancels the call it runs in."""

    def is_set(self) -> bool:
        import ray
        return super().is_set() or ray.get_runtime_context().is_canceled()


class Engine:
    """One device's Composer, in a Ray actor: its models stay loaded between runs.
    Runs (`stream`) share the device as in one process; sweep cells (`render`, `call`)
    go one at a time."""

    def __init__(self):
        self.composer = Composer()
        self._lock = threading.Lock()
        self._running, self._completed = 0, 0

    def status(self) -> dict:
        """Which process and device, the runs computing now and those run to their end."""
        return {"pid": os.getpid(), "device": str(self.composer.device),
                "running": self._running, "completed": self._completed}

    def info(self, name: str):
        return self.composer.info(name)

    def plan(self, recipe: Recipe, maps: bool, lift: bool | None) -> Plan:
        return self.composer.plan(recipe, maps, lift)

    def budget(self, name: str) -> int | None:
        return self.composer.budget(name)

    def stream(self, planned: Plan) -> Iterator[bytes]:
        """The run's frames in batches (`batched`), then its Result without them (the
        caller has them), packed."""
        with self._lock:
            self._running += 1
        try:
            for item in batched(self.composer.run(planned, RayCancelFlag())):
                if isinstance(item, Result):      # the last item: the run went to its end
                    with self._lock:
                        self._completed += 1
                    item = dataclasses.replace(item, frames=())
                yield packed(item)
        finally:
            with self._lock:
                self._running -= 1

    def render(self, planned: Plan) -> bytes:
        *_, result = self.composer.run(planned, RayCancelFlag())
        return packed(result)

    def call(self, fn: Callable, *args) -> bytes:
        return packed(fn(*args))


class EnginePool:
    """One engine per free device of the cluster (a GPU each; one per CPU on a cluster
    without GPUs), or `engines` of them; each call goes to the least loaded engine, by
    the network evaluations outstanding on it."""

    def __init__(self, ray, engines: int | None = None):
        self.ray = ray
        free = ray.available_resources()
        kind = "GPU" if free.get("GPU", 0) >= 1 else "CPU"
        count = engines or int(free.get(kind, 0))
        if count < 1:
            raise ClusterError(f"cluster: no free {kind} for an engine")
        actor = ray.remote(num_gpus=1 if kind == "GPU" else 0, num_cpus=1,
                           max_restarts=RETRIES, max_task_retries=RETRIES,
                           concurrency_groups={"runs": RUNS_PER_ENGINE, "cells": 1})(Engine)
        self.engines = [actor.remote() for _ in range(count)]
        self.load = [0] * count
        self._lock = threading.Lock()
        try:
            ray.get([e.status.remote() for e in self.engines], timeout=ENGINE_START_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise ClusterError(f"cluster: {count} engines did not start within {ENGINE_START_S} s; "
                               f"is a {kind} free for each?") from None

    def take(self, cost: int) -> int:
        with self._lock:
            index = min(range(len(self.engines)), key=lambda i: (self.load[i], i))
            self.load[index] += cost
        return index

    def give_back(self, index: int, cost: int) -> None:
        with self._lock:
            self.load[index] -= cost

    def status(self) -> list[dict]:
        return self.ray.get([e.status.remote() for e in self.engines])

    def ask(self, method: str, *args):
        """One quick call (a plan, a model's info) on the least loaded engine."""
        engine = self.engines[self.take(0)]
        return self.answer(getattr(engine, method).remote(*args))

    def answer(self, ref):
        """The call's value, or the engine's own error as it would be raised in one process."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            raise err.cause from None
        except self.ray.exceptions.RayActorError as err:
            raise ComposerError(f"cluster: the engine running this was lost "
                                f"({str(err).strip().splitlines()[0]})") from None

    def wait(self, waitable, cancel: threading.Event | None) -> bool:
        """Block until `waitable` has something to read (True) or `cancel` is set (False)."""
        while not (cancel is not None and cancel.is_set()):
            ready, _ = self.ray.wait([waitable], timeout=POLL_S)
            if ready:
                return True
        return False

    def cells(self, method: str, calls: list[tuple[str, int, tuple]],
              cancel: threading.Event | None = None) -> Iterator[Any]:
        """Each (name, cost, args) as one call of the engine method, spread over the pool by
        cost; values in the given order, a failed cell as CellFailed. A lost engine's
        cells rerun on the engine Ray restarts in its place."""
        submitted = []
        for name, cost, args in calls:
            index = self.take(cost)
            call = getattr(self.engines[index], method).options(concurrency_group="cells")
            submitted.append((name, cost, index, call.remote(*args)))
        try:
            for k, (name, cost, index, ref) in enumerate(submitted):
                if not self.wait(ref, cancel):
                    raise Cancelled
                try:
                    value = unpacked(self.answer(ref))
                except Exception as err:  # noqa: BLE001 - whatever failed: named, and the rest go on
                    value = CellFailed(name, " ".join(str(err).split()) or type(err).__name__)
                finally:
                    self.give_back(index, cost)
                    submitted[k] = None
                yield value
        finally:
            for left in filter(None, submitted):      # cancelled or abandoned: stop the rest
                self.ray.cancel(left[3])
                self.give_back(left[2], left[1])

    def map(self, fn: Callable, calls: list[tuple[str, tuple]],
            cancel: threading.Event | None = None) -> Iterator[Any]:
        """fn(*args) for each (name, args) on the pool, as `cells` (each costs the same)."""
        return self.cells("call", [(name, 1, (fn, *args)) for name, args in calls], cancel)

    def close(self) -> None:
        for engine in self.engines:
            self.ray.kill(engine)


class RemoteComposer(Composer):
    """The Composer's interface on a pool of engines: plans, model infos and runs are the
    engines', so this process loads no model (its own cache stays empty)."""

    def __init__(self, address: str = "auto", what: str = CLUSTER_ENV, engines: int | None = None):
        super().__init__("cpu")
        self.pool = EnginePool(connect(address, what), engines)

    def info(self, name: str):
        return self.pool.ask("info", name)

    def plan(self, recipe: Recipe, maps: bool = False, lift: bool | None = None) -> Plan:
        return self.pool.ask("plan", recipe, maps, lift)

    def budget(self, name: str) -> int | None:
        return self.pool.ask("budget", name)

    def run(self, planned: Plan, cancel: threading.Event | None = None) -> Iterator[Frame | Result]:
        """`Composer.run` on the least loaded engine, its frames streamed back."""
        pool, stream = self.pool, None
        index = pool.take(planned.total)
        frames = []
        try:
            stream = pool.engines[index].stream.options(concurrency_group="runs",
                                                        max_task_retries=0).remote(planned)
            while pool.wait(stream, cancel):
                item = unpacked(pool.answer(next(stream)))
                if isinstance(item, Result):          # the last item
                    yield dataclasses.replace(item, frames=tuple(frames))
                    return
                for frame in item:                    # a batch of frames
                    if cancel is not None and cancel.is_set():
                        raise Cancelled
                    frames.append(frame)
                    yield frame
            raise Cancelled
        finally:
            if stream is not None:        # stops the engine's run at its next evaluation; no-op when done
                pool.ray.cancel(stream)
            pool.give_back(index, planned.total)

    def cells(self, planned: SweepPlan,
              cancel: threading.Event | None = None) -> Iterator[SweepCell | CellFailed]:
        """Every cell of a planned sweep on the pool, in grid order; a cell that failed
        comes as CellFailed, named 'cell (row, column) labels'."""
        calls = [(f"cell ({i + 1}, {j + 1}) {' · '.join(labels)}", cell.total, (cell,))
                 for (i, j), labels, cell in planned.cells]
        for (position, labels, _), value in zip(planned.cells, self.pool.cells("render", calls, cancel)):
            yield value if isinstance(value, CellFailed) else SweepCell(position, labels, value)

    def sweep(self, planned: SweepPlan, cancel: threading.Event | None = None) -> Iterator[SweepCell]:
        """`Composer.sweep` with the cells computed at once on the pool; a failed cell raises."""
        for cell in self.cells(planned, cancel):
            if isinstance(cell, CellFailed):
                raise ComposerError(f"{cell.name}: {cell.error}")
            yield cell

    def close(self) -> None:
        self.pool.close()
