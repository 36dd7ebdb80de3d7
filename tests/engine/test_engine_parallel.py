"""medcl.engine.parallel: batches read in worker processes and run in threads come back complete and in order."""

from __future__ import annotations

import functools
import threading
import time

import pytest
import torch

from medcl.engine.parallel import map_batches, read_batches


def _square_or_error(i: int) -> int | str:
    return f"item {i} unreadable" if i == 5 else i * i


@pytest.mark.parametrize("workers", [0, 2])
def test_read_batches_in_order_with_error_values(workers):
    got = list(read_batches(list(range(11)), functools.partial(_square_or_error), 4, workers))
    assert [len(b) for b in got] == [4, 4, 3]
    assert sum(got, []) == [0, 1, 4, 9, 16, "item 5 unreadable", 36, 49, 64, 81, 100]


def test_map_batches_keeps_order_uses_threads_and_one_intra_op_thread():
    seen: dict[int, int] = {}

    def fn(b: int) -> int:
        seen[b] = torch.get_num_threads()
        return b * 10 if b % 3 else -b  # uneven work order does not reorder results

    names = set()

    def named(b: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.05)  # long enough that the second thread takes work too
        return fn(b)

    assert list(map_batches(named, range(9), threads=2)) == [0, 10, 20, -3, 40, 50, -6, 70, 80]
    assert set(seen.values()) == {1}
    assert len(names) == 2 and threading.current_thread().name not in names


def test_map_batches_propagates_errors():
    def boom(b: int) -> int:
        if b == 2:
            raise ValueError("bad batch 2")
        return b

    with pytest.raises(ValueError, match="bad batch 2"):
        list(map_batches(boom, range(4), threads=2))
