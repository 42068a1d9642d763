"""The frames a session keeps of its last run, for the Frame slider, under one
memory budget shared by every session."""
from __future__ import annotations

import io
import os
import threading
import time
import weakref
from collections import OrderedDict

import numpy as np
from PIL import Image

from composer.facade import Frame

KEEP_SECONDS = 3600
# All sessions' scrubbable frames together (KeptFrames), in MB: COMPOSER_FRAMES_MB.
FRAMES_BUDGET = int(float(os.environ.get("COMPOSER_FRAMES_MB", "128")) * 2**20)


def packed(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def unpacked(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def kept_frame(frame: Frame, final: np.ndarray | None = None,
               final_map: np.ndarray | None = None) -> dict:
    """A frame as a session keeps it for the scrubber: PNG bytes at the fastest
    setting, about 1/70 of the pixels' memory for a 2D scatter (2.6 KB for 196 KB).
    `final` stands for the preview and x_t of the run's last picture, `final_map` for
    its map (the run's averaged conflict)."""
    shown_map = frame.map if final_map is None else final_map
    return {"preview": packed(frame.preview if final is None else final),
            "noisy": packed(frame.noisy if final is None else final),
            "concepts": [packed(c) for c in frame.concepts],
            "map": None if shown_map is None else packed(shown_map),
            "concept_maps": [packed(m) for m in frame.concept_maps]}


def chosen_view(preview, noisy, map_picture, concepts, concept_maps, show_noisy: bool,
                show_maps: bool):
    """The picture and thumbnails a view shows: the maps where asked for and made."""
    if show_maps and map_picture is not None:
        return map_picture, (concept_maps or concepts)
    return (noisy if show_noisy else preview), concepts


class Run:
    """A run's scrubbable frames as a session holds them. Written only through its
    methods, under its own lock: the run's thread adds frames while Stop (a request of
    its own) and the memory budget (another session's run) end or release them.
    Weakly referenced by KeptFrames, so a session's older runs are freed as soon as it
    drops them."""

    def __init__(self, labels: tuple[str, ...] | list[str] = ()):
        self.labels = tuple(labels)
        self._lock = threading.Lock()
        self._chart = ""     # the run's levels chart, kept under every scrubbed frame
        self._frames: list[dict] = []
        self._total: int | None = None
        self._done = self._ended = self._stopped = self._released = False

    def add(self, frame: dict) -> bool:
        """Keep a frame, unless Stop fixed the frames or the budget released them."""
        with self._lock:
            if self._stopped or self._released:
                return False
            self._frames.append(frame)
            return True

    def stop(self) -> int:
        """Fix the frames where they are (the run's thread may finish one more step
        before it sees the cancel); how many there are."""
        with self._lock:
            self._stopped = True
            return len(self._frames)

    def release(self) -> bool:
        """Free a finished run's frames for the budget; False while it is streaming (its
        frame k must stay step k)."""
        with self._lock:
            if not self._ended:
                return False
            self._released = True
            self._frames.clear()
            return True

    def progress(self, total: int) -> None:
        with self._lock:
            self._total = total

    def end(self, done: bool = False, chart: str = "") -> None:
        """The stream ended (finished, failed or stopped); `done`: with its result and
        its levels `chart`."""
        with self._lock:
            self._ended = True
            self._done = self._done or done
            self._chart = chart or self._chart

    @property
    def frames(self) -> tuple[dict, ...]:
        with self._lock:
            return tuple(self._frames)

    @property
    def total(self) -> int | None:
        return self._total

    @property
    def chart(self) -> str:
        return self._chart

    @property
    def done(self) -> bool:
        return self._done

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def released(self) -> bool:
        return self._released


class KeptFrames:
    """The scrubbable frames of every session's last run share one budget (bytes of
    PNG, FRAMES_BUDGET): past it, the oldest finished runs' frames are released first,
    so the server's memory is bounded however many sessions stay open."""

    def __init__(self, budget: int = FRAMES_BUDGET):
        self.budget = budget
        self._runs: OrderedDict[int, tuple[weakref.ref, int]] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, live: Run, frame: dict) -> None:
        size = sum(len(v) for key in ("preview", "noisy", "map") if (v := frame[key])) + sum(
            len(v) for key in ("concepts", "concept_maps") for v in frame[key])
        with self._lock:
            if not live.add(frame):                      # stopped or released: final
                return
            for key in [k for k, (ref, _) in self._runs.items() if ref() is None]:
                del self._runs[key]                      # dropped by its session: already freed
            ref, held = self._runs.pop(id(live), (None, 0))
            if ref is None or ref() is not live:         # a new run, whatever its address
                ref, held = weakref.ref(live), 0
            self._runs[id(live)] = (ref, held + size)
            total = sum(held for _, held in self._runs.values())
            for old_key, (old_ref, freed) in list(self._runs.items()):
                if total <= self.budget:
                    break
                old = old_ref()
                if old is None or old is live or not old.release():
                    continue
                del self._runs[old_key]
                total -= freed


def timed(stream):
    """(item, seconds spent inside the stream so far) for each item: compute time,
    not the time the consumer spends sending frames to a browser."""
    total = 0.0
    while True:
        start = time.perf_counter()
        try:
            item = next(stream)
        except StopIteration:
            return
        total += time.perf_counter() - start
        yield item, total


def spread(items: list, count: int) -> list:
    """`count` items evenly spaced over the list, always keeping the last."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]
