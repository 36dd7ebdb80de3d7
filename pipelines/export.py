"""``medcl export``: a medcl checkpoint -> weights-only file, ONNX folder or zones MONAI bundle.

- ``weights`` (any family): ``model.safetensors`` + ``config.json`` (:mod:`medcl.engine.weights`).
- ``onnx`` (``ecg``, ``zones``): ``model.onnx`` + ``card.json`` (:mod:`medcl.export.onnx`). ECG: input
  ``ecg`` ``(N, 12, samples)`` float32 after medcl's preprocessing (resampled, high-passed,
  cropped/padded as ``medcl ecg predict`` does), outputs ``probabilities`` ``(N, 71)`` of the
  model's head and ``similarities`` ``(N, P)``; plus ``labels.json``, ``prototypes.json`` (class
  and training source of every prototype) and ``contribution_weights.npy`` (labels x prototypes).
  Zones: one patch ``image`` ``(B, 1, X, Y, Z)`` in, ``probabilities`` ``(B, 6, X, Y, Z)`` out
  (5 fused zones + uncertainty); X, Y, Z multiples of the card's ``divisor``.
- ``bundle`` (``zones``): a MONAI bundle (:mod:`medcl.export.bundle`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcl.engine.checkpoint import CheckpointData, load_model_checkpoint
from medcl.engine.weights import model_card, write_weights
from medcl.errors import MedclError
from medcl.utils import write_json

FORMATS = ("weights", "onnx", "bundle")


def export(checkpoint: str | os.PathLike, fmt: str, out_dir: str | os.PathLike, exporter: str = "legacy") -> Path:
    """Export ``checkpoint`` (``.ckpt`` or weights-only file) as ``fmt`` into ``out_dir``; returns the main file.

    Raises:
        MedclError: unknown format, a family the format does not support, or a bad checkpoint.
    """
    if fmt not in FORMATS:
        raise MedclError(f"--format: {fmt!r} is not one of {list(FORMATS)}")
    ckpt = load_model_checkpoint(checkpoint, None)
    out = Path(out_dir)
    if fmt == "weights":
        return write_weights(ckpt, out)
    if fmt == "onnx" and ckpt.family == "ecg":
        return _ecg_onnx(ckpt, out, exporter)
    if fmt == "onnx" and ckpt.family == "zones":
        return _zones_onnx(ckpt, out, exporter)
    if fmt == "bundle" and ckpt.family == "zones":
        from medcl.export.bundle import write_bundle

        return write_bundle(_zones_net(ckpt), model_card(ckpt), out)
    supported = "ecg, zones" if fmt == "onnx" else "zones"
    raise MedclError(f"{ckpt.path}: --format {fmt} supports the families {supported}, not '{ckpt.family}'")


def _ecg_onnx(ckpt: CheckpointData, out: Path, exporter: str) -> Path:
    from medcl.export.onnx import ECGOutputsModel, export_onnx
    from medcl.pipelines.ecg_model import load_model
    from medcl.pipelines.ecg_predict import (
        CONTRIBUTIONS_NPY,
        PROTOTYPES_JSON,
        branch_of,
        contribution_weights,
        prototype_table,
    )

    model = load_model(ckpt.path)
    net, cfg, labels, extra = model
    head = model.head
    n_samples = cfg.data.length
    card: dict[str, Any] = {
        **model_card(ckpt), "head": head, "labels": labels, "label_branches": branch_of(net, len(labels)),
        "preprocessing": {"fs": cfg.data.fs, "n_samples": n_samples, "highpass_hz": cfg.data.highpass,
                          "leads": 12, "reader": "medcl.io.ecg.read_ecg"},
    }
    example = torch.randn(2, 12, n_samples)
    path = export_onnx(ECGOutputsModel(net, head), example, out, "ecg", ["probabilities", "similarities"],
                       {"ecg": {0: "batch"}, "probabilities": {0: "batch"}, "similarities": {0: "batch"}},
                       card, exporter)
    write_json(out / "labels.json", labels)
    write_json(out / PROTOTYPES_JSON, prototype_table(net, labels, extra))
    np.save(out / CONTRIBUTIONS_NPY, contribution_weights(net, head).numpy().astype(np.float32), allow_pickle=False)
    return path


def _zones_net(ckpt: CheckpointData) -> torch.nn.Module:
    from medcl.engine.checkpoint import load_state_into
    from medcl.nets.dualpath import build_zones_net

    return load_state_into(build_zones_net(ckpt.config.get("model")), ckpt).eval()


def _zones_onnx(ckpt: CheckpointData, out: Path, exporter: str) -> Path:
    from medcl.export.onnx import ZonesPatchModel, export_onnx
    from medcl.postprocess.volumes import ZONE_NAMES

    net = _zones_net(ckpt)
    divisor = list(net.spec.divisor)
    card = {**model_card(ckpt), "divisor": divisor, "channels": ["BG", *ZONE_NAMES.values(), "uncertainty"]}
    example = torch.randn(2, 1, *(2 * d for d in divisor))
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    return export_onnx(ZonesPatchModel(net), example, out, "image", ["probabilities"],
                       {"image": axes, "probabilities": axes}, card, exporter)
