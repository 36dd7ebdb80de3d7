"""The PTB-XL folder as the ECG workflow sees it, and a model's probabilities over one of its folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medcl.data.ptbxl import PTBXL
from medcl.nets.protoecg import ProtoECGNet, branch_contributions, branch_probabilities, head_probabilities
from medcl.pipelines.ecg_config import ECGConfig
from medcl.pipelines.ecg_model import label_groups

__all__ = ["ECGData", "load_data", "loader", "predict_split"]


@dataclass
class ECGData:
    """The PTB-XL folder with the 71-label space and the branch groups (indices into it)."""

    ptbxl: PTBXL
    labels: list[str]
    groups: dict[str, list[int]]

    def dataset(self, split: str) -> Dataset:
        return self.ptbxl.dataset(split)

    def labels_of(self, split: str) -> np.ndarray:
        return self.ptbxl.y[self.ptbxl.split_indices(split)]


def load_data(cfg: ECGConfig, root: str | None = None, workers: int | None = None) -> ECGData:
    """Open ``root`` (default ``cfg.data.root``) as PTB-XL with the 71 ``all`` labels."""
    d = cfg.data
    ptbxl = PTBXL(d.root if root is None else root, fs=d.fs, label_set="all", n_samples=d.n_samples, highpass=d.highpass,
                  cache_dir=d.cache_dir, workers=workers, folds=d.folds.as_dict())
    return ECGData(ptbxl, list(ptbxl.labels), label_groups(list(ptbxl.labels)))


def loader(ds: Dataset, batch_size: int, num_workers: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


@torch.no_grad()
def predict_split(net: ProtoECGNet, data: ECGData, split: str, head: str, batch_size: int,
                  with_branches: bool = False, branch_source: str = "head"):
    """Probabilities ``(N, num_labels)`` of a split (and, optionally, per branch) plus labels.

    ``branch_source``: ``"head"`` (the branch classifiers) or ``"contribution"``
    (:func:`branch_contributions` of the fusion layer).
    """
    device = next(net.parameters()).device
    net.eval()
    heads, branches = [], []
    per_branch = branch_contributions if branch_source == "contribution" else branch_probabilities
    for x, _ in loader(data.dataset(split), batch_size, 0):
        out = net(x.to(device))
        # float64: sigmoid of float32 logits beyond about +-100 collapses to 0 or 1 and ties the ranks
        heads.append(head_probabilities(net, out, head).double().cpu())
        branches.append(per_branch(net, out).cpu())
    y = data.labels_of(split)
    probs = torch.cat(heads).numpy() if heads else np.zeros((0, len(data.labels)))
    if with_branches:
        return probs, (torch.cat(branches).numpy() if branches else probs), y
    return probs, y
