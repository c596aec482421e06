"""The bounded hand-off between a live source's decoding thread and the model: complete windows wait here, at most
`capacity` of them; a new window beyond that pushes out the oldest waiting one, which is skipped (counted), so a
model slower than the stream never makes a queue that grows. Other items (gaps, the end, a failure) are always kept.

Kept free of torch and PyAV, so the command line can read `WAITING` without loading the model's libraries.
"""

from __future__ import annotations

import collections
import threading

__all__ = ['WAITING', 'Handoff']

WAITING = 1  # complete windows that may wait for the model; measured in benchmarks/README.md ("Live streams")


class Handoff:
    """Items from one thread to another, oldest first; `skipped` counts the windows pushed out."""

    def __init__(self, capacity: int):
        self.capacity, self.skipped = capacity, 0
        self._items: collections.deque[tuple[object, bool]] = collections.deque()  # (item, skippable)
        self._ready = threading.Condition()

    def put(self, item, skippable: bool = False) -> None:
        """Hand `item` on. A `skippable` item (a window) beyond `capacity` waiting ones pushes out the oldest."""
        with self._ready:
            if skippable and sum(skip for _, skip in self._items) >= self.capacity:
                oldest = next(i for i, (_, skip) in enumerate(self._items) if skip)
                del self._items[oldest]
                self.skipped += 1
            self._items.append((item, skippable))
            self._ready.notify()

    def take(self, timeout: float) -> list:
        """Everything waiting, oldest first; [] when nothing came within `timeout` seconds."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            items = [item for item, _ in self._items]
            self._items.clear()
            return items
