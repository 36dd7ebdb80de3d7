"""Throughput helpers for batch inference on CPU: read ahead in worker processes, run batches in
parallel threads with one intra-op thread each.

On a few cores, a ResNet-18 forward of a batch scales poorly over intra-op threads (small
feature maps, barriers at every layer), while independent batches in separate threads keep every
core busy; eval-mode networks have no batch coupling, so the outputs are the same. Reading is
Python-heavy (header parsing) and holds the GIL, so it goes to DataLoader worker processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["map_batches", "read_batches"]


class _Items:
    """Map-style dataset: ``read(items[i])``."""

    def __init__(self, items: Sequence[Any], read: Callable[[Any], Any]) -> None:
        self.items, self.read = items, read

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.read(self.items[i])


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def _one_thread(_worker: int) -> None:
    import torch

    torch.set_num_threads(1)


def read_batches(items: Sequence[Any], read: Callable[[Any], Any], batch_size: int,
                 workers: int = 1) -> Iterator[list[Any]]:
    """Lists of ``read(item)`` for consecutive ``batch_size`` items, in order.

    ``workers >= 1``: read in that many DataLoader worker processes (``read`` must be picklable
    where processes are spawned, e.g. a module-level function or a ``functools.partial`` of one);
    ``0``: in this process. Exceptions in ``read`` propagate; return an error value instead to
    keep going.
    """
    from torch.utils.data import DataLoader

    workers = max(0, min(workers, (len(items) + batch_size - 1) // batch_size))
    loader = DataLoader(_Items(items, read), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_as_list, worker_init_fn=_one_thread if workers else None,
                        prefetch_factor=2 if workers else None, persistent_workers=False)
    yield from loader


def map_batches(fn: Callable[[T], R], batches: Iterable[T], threads: int = 2) -> Iterator[R]:
    """``fn(batch)`` for every batch, computed in ``threads`` threads with one torch intra-op
    thread each, yielded in input order; at most ``2 * threads`` batches are in flight.

    ``threads <= 1`` runs in the calling thread (with its own intra-op threads).
    """
    if threads <= 1:
        yield from map(fn, batches)
        return
    with ThreadPoolExecutor(max_workers=threads, initializer=_one_thread, initargs=(0,)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(fn, batch))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
