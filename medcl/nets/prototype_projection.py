"""Prototype projection ("push") of ProtoECGNet, vectorised over samples, windows and prototypes.

Each prototype is replaced by the latent segment of the training sample (carrying one of the
prototype's classes) and window that it is most similar to, as in the reference implementation:
the candidate score of a sample is the **max over windows** (while the forward pass averages), ties
go to the first sample seen and the first window. The training set is streamed in batches; a
running best (score, sample, window, segment) per prototype is updated with tensor ops only. Under
DDP each rank scans its shard and the best candidate across ranks wins
(:func:`medcl.engine.distributed.best_across_ranks`).

``unique=True`` (an option, not in the reference) keeps the ``candidates`` best (sample, window)
pairs per prototype and then assigns distinct source samples within each branch in rounds
(highest score first); the chosen segments are recomputed in a second, small pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medcl.nets.prototype import PrototypeLayer

__all__ = ["ProjectionResult", "Projector", "assign_unique", "sample_window"]


@dataclass
class ProjectionResult:
    """Winners per prototype: ``score`` (P,), ``sample`` (P,) dataset index (-1: no eligible sample),
    ``window`` (P,) feature-time start, ``segment`` (P, *prototype_shape) latent segment."""

    score: torch.Tensor
    sample: torch.Tensor
    window: torch.Tensor
    segment: torch.Tensor


class Projector:
    """Running best training segment per prototype of one prototype layer.

    Args:
        layer: the branch's prototype layer (similarities, identity matrix, segment extraction).
        candidates: how many best candidates to keep per prototype (1 = reference; >1 for unique).
    """

    def __init__(self, layer: PrototypeLayer, candidates: int = 1) -> None:
        self.layer = layer
        self.k = candidates
        p = layer.num_prototypes
        dev = layer.prototypes.device
        self.score = torch.full((p, candidates), float("-inf"), device=dev, dtype=layer.prototypes.dtype)
        self.sample = torch.full((p, candidates), -1, dtype=torch.long, device=dev)
        self.window = torch.zeros((p, candidates), dtype=torch.long, device=dev)
        self.segment = layer.prototypes.detach().clone() if candidates == 1 else None

    def candidates_of(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (sample, prototype): max-over-windows score (-inf when not eligible) and its window."""
        score, window = self.layer.window_similarities(features).to(self.score.dtype).max(dim=-1)  # (B, P)
        eligible = labels.to(score.dtype) @ self.layer.identity.to(score.dtype).T > 0
        return score.masked_fill(~eligible, float("-inf")), window

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """Fold one batch in: ``features`` of the branch, its ``labels`` (B, C), dataset ``index`` (B,)."""
        score, window = self.candidates_of(features, labels)
        if self.k == 1:
            self._update_best(features, score, window, index)
        else:
            self._update_topk(score, window, index)

    def _update_best(self, features, score, window, index) -> None:
        best, b = score.max(dim=0)  # (P,), first sample on ties
        protos = torch.arange(score.shape[1], device=score.device)
        win = window[b, protos]
        better = (best > self.score[:, 0]).nonzero().flatten()  # only these segments are extracted
        if better.numel() == 0:
            return
        self.score[better, 0] = best[better]
        self.sample[better, 0] = index[b[better]]
        self.window[better, 0] = win[better]
        self.segment[better] = self.layer.window_segment(features, b[better], win[better]).to(self.segment.dtype)

    def _update_topk(self, score, window, index) -> None:
        all_score = torch.cat([self.score, score.T], dim=1)  # (P, k + B)
        all_sample = torch.cat([self.sample, index[None].expand(score.shape[1], -1)], dim=1)
        all_window = torch.cat([self.window, window.T], dim=1)
        # stable sort keeps earlier candidates first among equal scores (reference tie rule)
        order = torch.sort(all_score, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.score = all_score.gather(1, order)
        self.sample = all_sample.gather(1, order)
        self.window = all_window.gather(1, order)

    def candidate_lists(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(score, sample, window)`` candidate lists ``(P, k)``, merged across DDP ranks."""
        from medcl.engine.distributed import gather_no_grad

        score, sample, window = (gather_no_grad(t.T.contiguous()).T for t in (self.score, self.sample, self.window))
        order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, : self.k]
        return score.gather(1, order), sample.gather(1, order), window.gather(1, order)

    def result(self) -> ProjectionResult:
        """Best candidate per prototype, combined across DDP ranks (k = 1)."""
        from medcl.engine.distributed import best_across_ranks

        score, sample, window, segment = best_across_ranks(self.score[:, 0], self.sample[:, 0],
                                                          self.window[:, 0], self.segment)
        return ProjectionResult(score, sample, window, segment)


def assign_unique(score: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Pick one candidate column per prototype so that no two prototypes share a sample.

    ``score``/``sample`` are ``(P, k)`` candidate lists. The result equals the greedy assignment in
    order of decreasing score (ties: lower prototype index), computed in rounds: an edge (prototype,
    sample) is accepted when it is the best remaining edge of both its prototype and its sample
    (the greedy order accepts exactly such edges); accepted prototypes and samples leave the pool.
    Returns the chosen column per prototype (``-1`` when all of its candidates were taken).
    """
    p, _ = score.shape
    rows = torch.arange(p, device=score.device)
    choice = torch.full((p,), -1, dtype=torch.long, device=score.device)
    taken = sample.new_zeros(0)
    usable = torch.isfinite(score) & (sample >= 0)
    for _ in range(p):
        avail = usable & (choice < 0)[:, None] & ~torch.isin(sample, taken)
        if not bool(avail.any()):
            break
        key = score.masked_fill(~avail, float("-inf"))
        best_key, best_col = key.max(dim=1)
        cand = sample[rows, best_col]
        uniq, inv = torch.unique(sample[avail], return_inverse=True)
        per_sample = key.new_full((len(uniq),), float("-inf")).scatter_reduce(0, inv, key[avail], "amax")
        mutual = torch.isfinite(best_key) & (best_key == per_sample[torch.searchsorted(uniq, cand).clamp(max=len(uniq) - 1)])
        winners = _winner_per_sample(cand, best_key, mutual)
        choice = torch.where(winners, best_col, choice)
        taken = torch.cat([taken, cand[winners]])
    return choice


def _winner_per_sample(samples: torch.Tensor, key: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Mask of the active prototypes that hold the best key for their sample (lowest index on ties)."""
    key = key.masked_fill(~active, float("-inf"))
    uniq, inv = torch.unique(samples, return_inverse=True)
    best = key.new_full((len(uniq),), float("-inf")).scatter_reduce(0, inv, key, "amax")
    is_best = active & (key == best[inv])
    idx = torch.arange(len(samples), device=key.device)
    first = torch.full((len(uniq),), len(samples), device=key.device, dtype=torch.long)
    first = first.scatter_reduce(0, inv, torch.where(is_best, idx, len(samples)), "amin")
    return is_best & (idx == first[inv])


def sample_window(window: torch.Tensor, length: int, feature_len: int, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Map feature-time window starts to signal samples ``[start, end)`` (reference mapping).

    The window of ``length`` feature steps covers ``int(length * n / T')`` samples starting at
    ``int(w * n / T')``, clipped into the record.
    """
    ratio = n_samples / feature_len
    raw = min(int(length * ratio), n_samples)
    start = (window.double() * ratio).long().clamp(0, n_samples - raw)
    return start, start + raw
