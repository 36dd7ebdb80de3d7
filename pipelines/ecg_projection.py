"""The ``project`` stage of ProtoECGNet: stream the training fold through every branch and replace
each prototype by its best training segment (:mod:`medcl.nets.prototype_projection` holds the
tensor algorithm; this module drives it over the data and records provenance).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from medcl.nets.protoecg import BRANCHES, ProtoECGNet
from medcl.nets.prototype_projection import Projector, assign_unique, sample_window
from medcl.pipelines.ecg_config import ECGConfig
from medcl.pipelines.ecg_data import ECGData, loader

__all__ = ["project_prototypes"]


class _WithIndex(Dataset):
    """Items ``(x, y, i)``: the wrapped dataset's item and its position (projection provenance)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, y, i




def _shard_loader(ds: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    from medcl.engine.distributed import is_dist

    sampler = None
    if is_dist():
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, shuffle=False, drop_last=False)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=num_workers)


@torch.no_grad()
def _scan(net: ProtoECGNet, loader: DataLoader, projectors: dict[str, Projector],
          groups: dict[str, list[int]], device: torch.device) -> dict[str, int]:
    """Stream the training shard through every branch; returns each branch's feature length."""
    from medcl.utils import progress_bar

    lengths: dict[str, int] = {}
    for x, y, idx in progress_bar(loader, "projection (training batches)", total=len(loader)):
        x, y, idx = x.to(device), y.to(device), idx.to(device)
        for b, proj in projectors.items():
            feats = net.branches[b].features(x)
            lengths[b] = int(feats.shape[-1]) if feats.ndim == 4 else 1
            proj.update(feats, y[:, groups[b]], idx)
    return lengths


@torch.no_grad()
def _segments_of(net: ProtoECGNet, branch: str, ds: Dataset, sample: torch.Tensor, window: torch.Tensor,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """Latent segments of (sample, window) pairs, from one pass over the distinct samples."""
    layer = net.branches[branch].prototypes
    uniq, inv = torch.unique(sample.clamp(min=0), return_inverse=True)
    feats = torch.cat([net.branches[branch].features(x.to(device))
                       for x, *_ in loader(Subset(ds, uniq.tolist()), batch_size, 0)])
    return layer.window_segment(feats, inv.to(device), window.to(device))


def project_prototypes(net: ProtoECGNet, data: ECGData, cfg: ECGConfig,
                       device: torch.device | None = None) -> dict[str, dict[str, Any]]:
    """Replace every prototype by its best training segment of its own class; return provenance.

    Returns ``{branch: {"sample", "ecg_id", "record", "labels", "window", "start", "end",
    "start_s", "end_s", "similarity"}}`` (tensors and lists) for the checkpoint ``extra``.
    """
    device = device or next(net.parameters()).device
    net.eval()
    train_ds = _WithIndex(data.dataset("train"))
    pc = cfg.project
    k = pc.candidates if pc.unique else 1
    projectors = {b: Projector(net.branches[b].prototypes, k) for b in BRANCHES}
    lengths = _scan(net, _shard_loader(train_ds, pc.batch_size, cfg.train.num_workers), projectors,
                    data.groups, device)
    return {b: _apply(net, b, projectors[b], train_ds, data, cfg, lengths.get(b, 1), device) for b in BRANCHES}


def _apply(net: ProtoECGNet, branch: str, proj: Projector, ds: Dataset, data: ECGData, cfg: ECGConfig,
           feature_len: int, device: torch.device) -> dict[str, Any]:
    layer = net.branches[branch].prototypes
    if proj.k == 1:
        res = proj.result()
        score, sample, window, segment = res.score, res.sample, res.window, res.segment
    else:
        scores, samples, windows = proj.candidate_lists()
        col = assign_unique(scores, samples).clamp(min=0)
        rows = torch.arange(len(col), device=col.device)
        score, sample, window = scores[rows, col], samples[rows, col], windows[rows, col]
        segment = _segments_of(net, branch, ds, sample, window, cfg.project.batch_size, device)
    found = sample >= 0
    if not bool(found.all()):
        warnings.warn(f"{branch}: {int((~found).sum())} prototypes have no training sample of their class; "
                      "they keep their trained values", stacklevel=2)
    with torch.no_grad():
        mask = found.view(-1, *([1] * (segment.ndim - 1))).to(layer.prototypes.device)
        layer.prototypes.copy_(torch.where(mask, segment.to(layer.prototypes), layer.prototypes))
    return _provenance(layer, sample, window, score, data, cfg, feature_len)


def _provenance(layer, sample, window, score, data: ECGData, cfg: ECGConfig, feature_len: int) -> dict[str, Any]:
    length = getattr(layer, "length", feature_len)
    start, end = sample_window(window.cpu(), length, feature_len, cfg.data.length)
    train_rows = data.ptbxl.split_indices("train")
    sample = sample.cpu()
    rows = np.where(sample.numpy() >= 0, train_rows[sample.clamp(min=0).numpy()], -1)
    paths = data.ptbxl.record_paths
    ids = data.ptbxl.ecg_ids
    labels = np.asarray(data.labels)
    return {
        "sample": sample,
        "ecg_id": torch.as_tensor([int(ids[r]) if r >= 0 else -1 for r in rows]),
        "record": [str(paths[r]) if r >= 0 else "" for r in rows],
        "labels": [labels[data.ptbxl.y[r] > 0].tolist() if r >= 0 else [] for r in rows],
        "window": window.cpu(),
        "start": start,
        "end": end,
        "start_s": start.double() / cfg.data.fs,
        "end_s": end.double() / cfg.data.fs,
        "similarity": score.detach().cpu().float(),
    }
