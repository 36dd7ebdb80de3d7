"""Distributed helpers for contrastive losses and prototype projection (one small module).

All functions are no-ops (identity) when ``torch.distributed`` is not initialised, so the same
loss code runs on one CPU, one GPU, or many ranks under DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 across ranks, keeping the gradient path to every rank's input.

    Uses :func:`torch.distributed.nn.functional.all_gather`, whose backward sums the incoming
    gradients and returns each rank its own slice, so negatives can span the global batch
    (as in SimCLR/Lightly's ``GatherLayer``).
    """
    if not is_dist():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` along dim 0 without gradients (for statistics, projection candidates)."""
    if not is_dist():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def best_across_ranks(score: torch.Tensor, *payload: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Element-wise best (max) ``score`` across ranks and the matching ``payload`` entries.

    ``score`` has shape ``(P,)`` (one candidate per item on each rank); each payload has a first
    dimension ``P``. Ties go to the lowest rank. Returns ``(score, *payload)`` for the winners.
    """
    if not is_dist():
        return (score, *payload)
    scores = gather_no_grad(score.unsqueeze(0))  # (R, P)
    winner = scores.argmax(dim=0)  # (P,) first max -> lowest rank
    idx = torch.arange(score.shape[0], device=score.device)
    out = [scores[winner, idx]]
    for item in payload:
        stacked = gather_no_grad(item.unsqueeze(0))  # (R, P, ...)
        out.append(stacked[winner, idx])
    return tuple(out)
