"""Decode the next batches while the current one is predicted: a bounded background thread.

Dataset plugins decode images in ``samples()`` (PIL releases the GIL while decoding), so one reader
thread overlaps that work with prediction without changing the sample order. An error in the reader
is re-raised in the consumer, at the batch where it happened.
"""

from __future__ import annotations

import queue
import threading
from itertools import islice
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def batched(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while batch := list(islice(items, size)):
        yield batch


def prefetch(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield from ``batches`` while a thread produces up to ``depth`` ahead; stops the thread on exit."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put((_DONE, exc))

    thread = threading.Thread(target=produce, name="harness-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
