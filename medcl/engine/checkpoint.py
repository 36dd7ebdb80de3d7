"""medcl checkpoints: Lightning's training state plus a self-describing ``"medcl"`` entry.

Every checkpoint written by :func:`medcl.engine.build_trainer` carries, besides what Lightning needs
to resume (optimiser, loops, callbacks), a ``"medcl"`` dict with the *unwrapped* network's state
dict, the family name, the resolved config, the label map, package versions and family extras
(e.g. prototype provenance). Loading never unpickles code: ``torch.load(weights_only=True)``.

One run-folder layout for every family (defined here, nowhere else):

- ``<out>/model.ckpt``: the model to use (a slim ``{"medcl": payload}`` file);
- ``<out>/checkpoints/{last,best}.ckpt``: Lightning's full state for resuming; a chain of stages
  keeps one folder per stage, ``<out>/checkpoints/<stage>/{last,best}.ckpt``, plus the stage's
  finished model ``<out>/checkpoints/<stage>/model.ckpt``.

Older layouts still load and resume: ``<out>/<stage>/checkpoints/`` (zones ``stage1``/``stage2``,
ECG stages), ``<out>/<stage>/model.ckpt`` and ``<out>/checkpoints/`` without ``model.ckpt``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcl.errors import MedclError

FAMILIES = ("sepclr", "zones", "ecg")
MODEL_FILE = "model.ckpt"
CHECKPOINTS_DIR = "checkpoints"


def versions() -> dict[str, str]:
    """Versions stored with every checkpoint (and printed by ``medcl info``)."""
    from importlib.metadata import PackageNotFoundError, version

    import medcl

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "medcl": str(medcl.__version__),
        "torch": str(torch.__version__),  # a TorchVersion object, which weights_only loading rejects
        "monai": installed("monai"),
        "lightning": installed("lightning"),
        "python": platform.python_version(),
    }


def model_payload(family: str, net: nn.Module, config: dict[str, Any], label_map: dict[str, int] | None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``"medcl"`` entry of a checkpoint: the unwrapped network's CPU state dict and what rebuilds it."""
    from medcl.utils import portable_config

    if not family:
        raise ValueError("model_payload: the family must be named")
    return {
        "family": family,
        "config": portable_config(config),  # no absolute path of this machine
        "label_map": label_map,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "versions": versions(),
        "extra": dict(extra or {}),
    }


def save_model_file(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write a slim model file ``{"medcl": payload}`` atomically (no optimiser or loop state)."""
    from medcl.utils import atomic_write_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write_path(path, suffix=".ckpt") as tmp:
        torch.save({"medcl": payload}, tmp)
    return path


# --------------------------------------------------------------------------------- run-folder layout


def model_file(out_dir: str | os.PathLike, stage: str | None = None) -> Path:
    """Where the model to use is written: ``<out>/model.ckpt`` (a stage's: ``<out>/checkpoints/<stage>/model.ckpt``)."""
    return checkpoint_dir(out_dir, stage) / MODEL_FILE if stage else Path(out_dir) / MODEL_FILE


def checkpoint_dir(out_dir: str | os.PathLike, stage: str | None = None) -> Path:
    """Where Lightning's resumable ``last.ckpt``/``best.ckpt`` go: ``<out>/checkpoints[/<stage>]``."""
    folder = Path(out_dir) / CHECKPOINTS_DIR
    return folder / stage if stage else folder


def _legacy_dir(out_dir: str | os.PathLike, stage: str | None) -> Path | None:
    return Path(out_dir) / stage / CHECKPOINTS_DIR if stage else None


def checkpoint_path(out_dir: str | os.PathLike, which: str = "best", stage: str | None = None) -> Path:
    """``best.ckpt`` when it exists (and ``which="best"``), else ``last.ckpt``, of a run (or one stage).

    A stage folder of the older layout (``<out>/<stage>/checkpoints/``) is used when the current one
    holds neither; the path returned for a run without checkpoints is the current layout's ``last.ckpt``.
    """
    folders = [checkpoint_dir(out_dir, stage)]
    legacy = _legacy_dir(out_dir, stage)
    if legacy is not None:
        folders.append(legacy)
    names = ("best.ckpt", "last.ckpt") if which == "best" else ("last.ckpt",)
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return folders[0] / "last.ckpt"


def find_stage_model(out_dir: str | os.PathLike, stage: str) -> Path | None:
    """The finished model of ``stage``: ``<out>/checkpoints/<stage>/model.ckpt`` (or the older ``<out>/<stage>/model.ckpt``)."""
    for path in (model_file(out_dir, stage), Path(out_dir) / stage / MODEL_FILE):
        if path.is_file():
            return path
    return None


def find_model(out_dir: str | os.PathLike) -> Path:
    """The model of a run folder: ``model.ckpt``, else (older runs) ``checkpoints/best.ckpt`` or ``last.ckpt``."""
    out = Path(out_dir)
    if model_file(out).is_file():
        return model_file(out)
    path = checkpoint_path(out, "best")
    if not path.is_file():
        raise MedclError(f"{out}: no {MODEL_FILE} (nor checkpoints/best.ckpt or last.ckpt) in this run folder")
    return path


def publish_model(checkpoint: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write ``<out>/model.ckpt`` from the ``"medcl"`` entry of a training checkpoint; return its path.

    Under DDP only rank 0 writes (every rank holds the same weights).
    """
    from medcl.engine.distributed import rank

    if rank() != 0:
        return model_file(out_dir)
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or not isinstance(raw.get("medcl"), dict):
        raise MedclError(f"{checkpoint}: not a medcl checkpoint (no 'medcl' entry)")
    return save_model_file(model_file(out_dir), raw["medcl"])


@dataclass
class CheckpointData:
    """What :func:`load_model_checkpoint` returns."""

    path: Path
    family: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    label_map: dict[str, int] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def load_model_checkpoint(path: str | os.PathLike, family: str | None) -> CheckpointData:
    """Load the model of a medcl checkpoint safely (``weights_only=True``) or of a weights-only file.

    ``path`` is a ``.ckpt``, a run folder (:func:`find_model`) or a ``model.safetensors`` written by
    ``medcl export --format weights`` (or its folder); see :mod:`medcl.engine.weights`. ``family=None`` accepts any medcl family.

    Raises:
        MedclError: missing/corrupt file, not a medcl checkpoint, or another family's checkpoint.
    """
    from medcl.engine.weights import is_weights_path, load_weights

    if is_weights_path(path):
        return _finite(load_weights(path, family))
    from medcl.io.checkpoint_file import safe_torch_load

    path = Path(path)
    if path.is_dir():  # a run folder, of any layout
        path = find_model(path)
    raw = safe_torch_load(path)  # refuses pickled code with medcl's own message
    payload = raw.get("medcl") if isinstance(raw, dict) else None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise MedclError(f"{path}: not a medcl checkpoint (no 'medcl' entry)")
    found = payload.get("family")
    if found != family and (family is not None or found not in FAMILIES):
        raise MedclError(f"{path}: checkpoint is of family '{found}', expected '{family or '/'.join(FAMILIES)}'")
    return _finite(CheckpointData(
        path=path,
        family=found,
        config=payload.get("config") or {},
        state_dict=payload["state_dict"],
        label_map=payload.get("label_map"),
        versions=payload.get("versions") or {},
        extra=payload.get("extra") or {},
    ))


def _finite(ckpt: CheckpointData) -> CheckpointData:
    """Every stored weight is a finite tensor: NaN/inf weights (a diverged or corrupted run) would turn
    every output into NaN, or into background and 0 mL, without a word."""
    if not isinstance(ckpt.state_dict, dict):
        raise MedclError(f"{ckpt.path}: state_dict is not a mapping of weights")
    for name, value in ckpt.state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise MedclError(f"{ckpt.path}: state_dict entry {name!r} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise MedclError(f"{ckpt.path}: weights {name} hold NaN/inf values (a diverged or corrupted training)")
    return ckpt


def build_from(ckpt: CheckpointData, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` (the network ``ckpt``'s config describes) with ``ckpt``'s weights loaded; a stored
    config that the network refuses is one error naming the checkpoint."""
    try:
        net = build()
    except (MedclError, ValueError, TypeError, KeyError) as exc:
        raise MedclError(f"{ckpt.path}: stored config does not build the network ({exc})") from None
    return load_state_into(net, ckpt)


def load_state_into(net: nn.Module, ckpt: CheckpointData) -> nn.Module:
    """Load ``ckpt.state_dict`` into ``net``; shape/key mismatches become one clear error."""
    try:
        net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        detail = " ".join(str(exc).split())[:240]
        raise MedclError(f"{ckpt.path}: weights do not fit the network built from its config ({first}: {detail})") from None
    return net
