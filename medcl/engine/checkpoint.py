"""medcl checkpoints: Lightning's training state plus a self-describing ``"medcl"`` entry.

Every checkpoint written by :func:`medcl.engine.build_trainer` carries, besides what Lightning needs
to resume (optimiser, loops, callbacks), a ``"medcl"`` dict with the *unwrapped* network's state
dict, the family name, the resolved config, the label map, package versions and family extras
(e.g. prototype provenance). Loading never unpickles code: ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcl.errors import MedclError

FAMILIES = ("sepclr", "zones", "ecg")


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

    ``path`` is a ``.ckpt`` or a ``model.safetensors`` written by ``medcl export --format weights``
    (or its folder); see :mod:`medcl.engine.weights`. ``family=None`` accepts any medcl family.

    Raises:
        MedclError: missing/corrupt file, not a medcl checkpoint, or another family's checkpoint.
    """
    from medcl.engine.weights import is_weights_path, load_weights

    if is_weights_path(path):
        return load_weights(path, family)
    from medcl.io.checkpoint_file import safe_torch_load

    path = Path(path)
    raw = safe_torch_load(path)  # refuses pickled code with medcl's own message
    payload = raw.get("medcl") if isinstance(raw, dict) else None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise MedclError(f"{path}: not a medcl checkpoint (no 'medcl' entry)")
    found = payload.get("family")
    if found != family and (family is not None or found not in FAMILIES):
        raise MedclError(f"{path}: checkpoint is of family '{found}', expected '{family or '/'.join(FAMILIES)}'")
    return CheckpointData(
        path=path,
        family=found,
        config=payload.get("config") or {},
        state_dict=payload["state_dict"],
        label_map=payload.get("label_map"),
        versions=payload.get("versions") or {},
        extra=payload.get("extra") or {},
    )


def load_state_into(net: nn.Module, ckpt: CheckpointData) -> nn.Module:
    """Load ``ckpt.state_dict`` into ``net``; shape/key mismatches become one clear error."""
    try:
        net.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        detail = " ".join(str(exc).split())[:240]
        raise MedclError(f"{ckpt.path}: weights do not fit the network built from its config ({first}: {detail})") from None
    return net
