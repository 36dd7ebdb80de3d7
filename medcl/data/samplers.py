"""Batch samplers for SepCLR: group-balanced (50/50) or natural proportions.

The SepCLR losses need both groups in each batch (Louiset et al., ICLR 2024).
:class:`GroupBalancedBatchSampler` takes half of each batch from each group, drawn from per-epoch
random permutations (the smaller group is recycled). :class:`NaturalBatchSampler` shuffles all
samples and cuts batches with ``drop_last``, as the official code does, so groups keep their
natural proportions. Under DDP each rank gets its own batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["GroupBalancedBatchSampler", "NaturalBatchSampler"]


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``: the given values, else ``torch.distributed``'s when initialised, else ``(1, 0)``."""
    distributed = dist.is_available() and dist.is_initialized()
    replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1)
    return replicas, rank if rank is not None else (dist.get_rank() if distributed else 0)


class GroupBalancedBatchSampler(Sampler[list[int]]):
    """Yield index batches with ``batch_size // 2`` samples of each of two groups.

    Args:
        groups: per-sample group id (0 background, 1 target).
        batch_size: even number >= 2.
        seed: base seed; the permutation of epoch ``e`` uses ``(seed, e)``.
        num_batches: batches per epoch over all ranks (default: ``ceil(n / batch_size)``).
        num_replicas: DDP world size (default: from ``torch.distributed`` when initialised, else 1).
        rank: this process's rank (default: from ``torch.distributed``).
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        num_batches: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        groups = np.asarray(groups)
        if batch_size < 2 or batch_size % 2:
            raise ValueError(f"batch_size must be an even number >= 2, got {batch_size}")
        self.members = [np.flatnonzero(groups == g) for g in (0, 1)]
        if any(m.size == 0 for m in self.members):
            raise ValueError(f"both groups are needed; got {self.members[0].size} background, {self.members[1].size} target")
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.num_replicas, self.rank = _world(num_replicas, rank)
        total = num_batches if num_batches is not None else -(-groups.size // batch_size)
        self.num_batches = max(1, -(-total // self.num_replicas))  # per rank

    def set_epoch(self, epoch: int) -> None:
        """Use a new permutation for ``epoch`` (call before each epoch, like ``DistributedSampler``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _stream(self, members: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` indices: concatenated permutations of ``members``."""
        reps = -(-count // members.size)
        return np.concatenate([rng.permutation(members) for _ in range(reps)])[:count]

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        half = self.batch_size // 2
        n_all = self.num_batches * self.num_replicas
        per_group = [self._stream(m, n_all * half, rng).reshape(n_all, half) for m in self.members]
        batches = np.concatenate(per_group, axis=1)[self.rank :: self.num_replicas]
        yield from (b.tolist() for b in batches)


class NaturalBatchSampler(Sampler[list[int]]):
    """Shuffled batches at the natural group proportions, ``drop_last`` (the official SepCLR loader).

    Args:
        groups: per-sample group id (only its length is used; kept for the same signature).
        batch_size: samples per batch (>= 2).
        seed: base seed; epoch ``e`` shuffles with ``(seed, e)``.
        num_replicas: DDP world size (default: from ``torch.distributed``, else 1).
        rank: this process's rank.
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        batch_size: int,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.n = len(groups)
        if batch_size < 2 or batch_size * max(1, num_replicas or 1) > self.n:
            raise ValueError(f"batch_size {batch_size} needs at least that many samples per rank; got {self.n}")
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.num_batches = self.n // batch_size // self.num_replicas  # per rank; the rest is dropped

    def set_epoch(self, epoch: int) -> None:
        """Shuffle anew for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        used = self.num_batches * self.num_replicas * self.batch_size
        batches = order[:used].reshape(-1, self.batch_size)[self.rank :: self.num_replicas]
        yield from (b.tolist() for b in batches)
