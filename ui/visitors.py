"""How many runs one visitor may have active at once.

The device is shared fairly between active runs (composer.engine.SharedDevice), but the
number of active runs is finite (COMPOSER_CONCURRENCY); without a cap, one visitor
could hold every slot and make everyone else queue. A visitor is a Gradio session
and also the client's address: every session opened from one address (a page, or a
script opening a fresh gradio_client session per run) counts against it.

The address. Each proxy appends the address it saw to X-Forwarded-For, so only the
entries our own proxies appended can be believed; whatever comes before them is what
the client chose to send. With N trusted proxies (COMPOSER_TRUSTED_PROXIES) the client
is the N-th entry from the right; with 0 (a bare server) it is the socket's peer. The
default is 1 on a Hugging Face Space (SPACE_ID is set: its one proxy appends the
visitor's address) and 0 elsewhere. A header shorter than N entries is not from our
proxies: its last entry is used. A loopback peer or client (the machine itself: a
local app, the tests) is counted per session only, since everything on it shares one
address.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections import Counter

RUNS_PER_SESSION = 2      # a page's new run may start while its stopped one winds down
RUNS_PER_ADDRESS = 3
TRUSTED_PROXIES_ENV = "COMPOSER_TRUSTED_PROXIES"


class TooManyRuns(Exception):
    """The visitor already has as many runs active as allowed."""


def trusted_proxies() -> int:
    """COMPOSER_TRUSTED_PROXIES, else 1 on a Space and 0 elsewhere; a bad value is 0
    (believe no header), the safe reading."""
    default = "1" if os.environ.get("SPACE_ID") else "0"
    try:
        return max(0, int(os.environ.get(TRUSTED_PROXIES_ENV, default)))
    except ValueError:
        return 0


def client_address(request, proxies: int) -> str | None:
    """The client's address as the trusted proxies saw it (module docstring)."""
    if proxies == 0:
        client = getattr(request, "client", None)
        return getattr(client, "host", None) or None
    headers = getattr(request, "headers", None) or {}
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    return hops[-min(proxies, len(hops))] if hops else None


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def visitor_keys(request, proxies: int | None = None) -> list[tuple[str, str]]:
    if request is None:
        return []
    keys = [("session", str(getattr(request, "session_hash", None)))]
    address = client_address(request, trusted_proxies() if proxies is None else proxies)
    if address and not _is_loopback(address):
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
