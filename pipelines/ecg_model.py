"""The ProtoECGNet model of the ECG workflow: build it from a config, save it, load it.

What inference (``predict``, ``evaluate``, ``report``, ``export``, benches) needs and nothing of
training: no Lightning, no losses. Checkpoints are the engine's slim model files
(:func:`medcl.engine.checkpoint.model_payload`, the same entry Lightning checkpoints carry).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import ValidationError

from medcl.config import _format_validation_error
from medcl.data.ptbxl_statements import load_label_groups
from medcl.engine.checkpoint import build_from, load_model_checkpoint, model_payload, save_model_file
from medcl.errors import MedclError
from medcl.nets.protoecg import (
    BRANCHES,
    ProtoECGNet,
    branch_contributions,
    branch_probabilities,
    head_probabilities,
)
from medcl.pipelines.ecg_config import ECGConfig

log = logging.getLogger(__name__)

__all__ = ["ECGModel", "branch_contributions", "branch_probabilities", "build_net", "head_probabilities",
           "init_2d_branches", "label_groups", "load_model", "save_model"]


class ECGModel(NamedTuple):
    """A loaded ProtoECGNet checkpoint (unpacks as ``net, cfg, labels, extra``)."""

    net: ProtoECGNet
    cfg: ECGConfig
    labels: list[str]
    extra: dict[str, Any]

    @property
    def head(self) -> str:
        """The output head the model was finished with: ``"fusion"`` or ``"branches"``."""
        return self.extra.get("head", "branches")


def label_groups(labels: list[str]) -> dict[str, list[int]]:
    """Indices of each branch's codes among ``labels`` (every code must be present)."""
    pos = {c: i for i, c in enumerate(labels)}
    groups = load_label_groups()
    missing = sorted(c for codes in groups.values() for c in codes if c not in pos)
    if missing:
        raise MedclError(f"labels: the branch codes {missing[:5]} are not in the label set")
    return {b: [pos[c] for c in groups[b]] for b in BRANCHES}


def build_net(cfg: ECGConfig, groups: dict[str, list[int]], num_labels: int) -> ProtoECGNet:
    """The ProtoECGNet described by ``cfg.model`` (deterministic in the global seed)."""
    m = cfg.model
    return ProtoECGNet(groups, num_labels, dict(m.per_class), width=m.width, layers=tuple(m.layers),
                       proto_dim=m.proto_dim, n_samples=cfg.data.length, partial_length=m.partial_length,
                       pooling=m.pooling, dropout=m.dropout, normalize=cfg.data.normalize)


def init_2d_branches(net: ProtoECGNet, path: str) -> None:
    """Start both 2D branches from a torchvision ResNet-18 state dict (``model.init_2d``)."""
    from medcl.nets.protoecg import load_resnet18_2d

    for b in ("morphology", "global"):
        copied = load_resnet18_2d(net.branches[b].backbone, path)
    log.info("2D branches initialised from %s (%d tensors each; conv1 and fc not copied)", path, len(copied))


def save_model(path: str | os.PathLike, net: ProtoECGNet, cfg: ECGConfig, labels: list[str],
               extra: dict[str, Any]) -> Path:
    """Write a slim ``ecg`` model file atomically."""
    label_map = {c: i for i, c in enumerate(labels)}
    return save_model_file(path, model_payload("ecg", net, cfg.model_dump(mode="json"), label_map, extra))


def load_model(path: str | os.PathLike) -> ECGModel:
    """Rebuild the network of an ``ecg`` checkpoint (eval mode, CPU)."""
    ckpt = load_model_checkpoint(path, "ecg")
    try:
        cfg = ECGConfig.model_validate(ckpt.config)
    except ValidationError as exc:
        raise MedclError(_format_validation_error(f"{path}: stored config", exc)) from None
    label_map = ckpt.label_map or {}
    labels = sorted(label_map, key=label_map.__getitem__)
    net = build_from(ckpt, lambda: build_net(cfg, label_groups(labels), len(labels)))
    check_extra(path, ckpt.extra, len(labels))
    return ECGModel(net.eval(), cfg, labels, dict(ckpt.extra))


HEADS = ("fusion", "branches")


def check_extra(path: str | os.PathLike, extra: dict[str, Any], n_labels: int) -> None:
    """The stored output head is one of :data:`HEADS` and the thresholds are one probability per label."""
    head = extra.get("head", "branches")
    if head not in HEADS:
        raise MedclError(f"{path}: stored head {head!r} is not one of {list(HEADS)}")
    thresholds = extra.get("thresholds")
    if thresholds is None:
        return
    try:
        values = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.full(0, np.nan)
    if values.shape != (n_labels,) or not ((values >= 0) & (values <= 1)).all():
        raise MedclError(f"{path}: stored thresholds are not {n_labels} probabilities in [0, 1], one per label "
                         f"(got shape {tuple(values.shape)})")
