"""A DataLoader that collates the next batches in a background thread while the current one trains (the
forward/backward pass releases the GIL). Meant for a model on a GPU, where the CPU is otherwise idle during a step;
on a CPU-only machine the thread competes with torch's intra-op threads and slows training, so it is off unless
`training.prefetch` asks for it. With worker processes it is a plain DataLoader."""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

from torch.utils.data import DataLoader

_DONE = object()


class PrefetchLoader(DataLoader):
    def __init__(self, *args: Any, prefetch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefetch = prefetch

    def __iter__(self) -> Iterator:
        collate = getattr(self.collate_fn, "collate", self.collate_fn)
        if hasattr(collate, "fix_rank"):  # worker processes have no process group: they take the rank from here
            collate.fix_rank()
        batches = super().__iter__()
        if self.prefetch <= 0 or self.num_workers > 0:
            return batches
        return _background(batches, self.prefetch)


class _Error:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _background(batches: Iterator, depth: int) -> Iterator:
    """Yields what `batches` yields, produced up to `depth` items ahead by a daemon thread. An error in collation is
    raised here, in the consumer; a consumer that stops early (an exception, a batch limit) releases the thread."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Wait for a free slot; False when the consumer has gone."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put(_Error(e))

    thread = threading.Thread(target=produce, name="polymodal-collate", daemon=True)
    thread.start()

    def consume() -> Iterator:
        try:
            while True:
                item = slots.get()
                if item is _DONE:
                    return
                if isinstance(item, _Error):
                    raise item.error
                yield item
        finally:
            stop.set()

    return consume()
