"""A small least-recently-used cache, shared by every cache of the project."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable


class LRU:
    """Keeps the `size` most recently used entries; thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The entry (now the most recently used), or `default`."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> list:
        """Store an entry; returns the values evicted to make room, oldest first."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            evicted = []
            while len(self._items) > self.size:
                evicted.append(self._items.popitem(last=False)[1])
            return evicted

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            return self._items[key]

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.put(key, value)

    def __iter__(self):
        """The keys, least recently used first (a snapshot)."""
        with self._lock:
            return iter(list(self._items))

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
