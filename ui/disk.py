"""Bounded disk: the files a crowd's runs leave behind stay under a budget.

Every streamed frame Gradio serves is a file in its cache folder, and each run adds
a GIF and a PNG. The run folders live inside that cache, so Gradio serves them
without copying (each file is written once). After every run the cache is trimmed,
oldest files first, to LOW_WATER of the budget; a finished run's files are always the
newest, so what a visitor was just handed stays. COMPOSER_DISK_MB sets the budget.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

DISK_ENV = "COMPOSER_DISK_MB"
DEFAULT_MB = 512
LOW_WATER = 0.8          # trim to this share of the budget, so not every run trims


class DiskBudget:
    def __init__(self, folder: Path, limit_bytes: int):
        self.folder = Path(folder)
        self.limit = limit_bytes
        self._lock = threading.Lock()

    def files(self) -> list[tuple[float, int, Path]]:
        """(modified time, size, path) of every file under the folder."""
        found = []
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root) / name
                with contextlib.suppress(OSError):      # deleted meanwhile
                    stat = path.stat()
                    found.append((stat.st_mtime, stat.st_size, path))
        return found

    def usage(self) -> int:
        return sum(size for _, size, _ in self.files())

    def trim(self) -> int:
        """Delete the oldest files until the folder holds at most LOW_WATER of the
        budget, if it holds more than the budget; returns the bytes freed."""
        with self._lock:
            files = sorted(self.files())
            total = sum(size for _, size, _ in files)
            if total <= self.limit:
                return 0
            freed = 0
            for _, size, path in files:
                if total - freed <= LOW_WATER * self.limit:
                    break
                with contextlib.suppress(OSError):
                    path.unlink()
                    freed += size
            self._remove_empty_folders()
            return freed

    def _remove_empty_folders(self) -> None:
        for root, folders, _ in os.walk(self.folder, topdown=False):
            for name in folders:
                with contextlib.suppress(OSError):      # not empty, or gone
                    (Path(root) / name).rmdir()


def budget_bytes() -> int:
    try:
        mb = float(os.environ.get(DISK_ENV, DEFAULT_MB))
    except ValueError:
        mb = DEFAULT_MB
    return int((mb if mb > 0 else DEFAULT_MB) * 2 ** 20)
