"""How many runs one visitor may have active at once.

The device is shared fairly between active runs (composer.engine.Device), but the
number of active runs is finite (COMPOSER_CONCURRENCY); without a cap, one visitor
could hold every slot and make everyone else queue. A visitor is a Gradio session,
and, where a proxy forwards the client's address (a Hugging Face Space does, in
X-Forwarded-For), also that address: every session opened from one address counts
against it. Connections without a forwarded address (a local app, the tests) are
counted per session only, since every client on loopback shares one address.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter

RUNS_PER_SESSION = 2      # a page's new run may start while its stopped one winds down
RUNS_PER_ADDRESS = 3


class TooManyRuns(Exception):
    """The visitor already has as many runs active as allowed."""


def visitor_keys(request) -> list[tuple[str, str]]:
    if request is None:
        return []
    keys = [("session", str(getattr(request, "session_hash", None)))]
    forwarded = (getattr(request, "headers", None) or {}).get("x-forwarded-for", "")
    address = forwarded.split(",")[0].strip()
    if address:
        keys.append(("address", address))
    return keys


class Visitors:
    def __init__(self, per_session: int = RUNS_PER_SESSION, per_address: int = RUNS_PER_ADDRESS):
        self.limits = {"session": per_session, "address": per_address}
        self._active: Counter = Counter()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self, request):
        """Hold one of the visitor's run slots for the duration of a run."""
        keys = visitor_keys(request)
        with self._lock:
            for kind, key in keys:
                if self._active[(kind, key)] >= self.limits[kind]:
                    where = "this page" if kind == "session" else "your address"
                    raise TooManyRuns(f"{where} already has {self.limits[kind]} runs computing; "
                                      f"wait for one to finish, or press Stop")
            for key in keys:
                self._active[key] += 1
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._active[key] -= 1
                    if self._active[key] <= 0:
                        del self._active[key]
