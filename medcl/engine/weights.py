"""Weights-only model files: ``safetensors`` tensors plus a JSON model card, no pickle at all.

A weights file (``model.safetensors``) holds the unwrapped network's state dict; its header
metadata key ``"medcl"`` holds the model card as JSON (family, resolved config, label map,
versions, JSON-safe extras) and ``weights_sha256``, a digest of every tensor (name, dtype, shape,
bytes), checked on load so that an edited or damaged file is refused with one line. The same
card is written beside it as ``config.json`` for people and tools that do not read safetensors.
:func:`medcl.engine.load_model_checkpoint` accepts such a file (or its folder) wherever a
``.ckpt`` is accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcl.errors import MedclError

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "config.json"
FORMAT = "medcl-weights/1"


def json_safe(value: Any) -> Any:
    """Tensors and arrays become (nested) lists, numpy scalars Python numbers; dicts/lists recurse."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def split_aliases(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store tensors that are the same view once: ``(unique tensors, {alias: stored name})``.

    MONAI's ``DynUNet`` registers its blocks twice (``skip_layers`` and ``input_block`` ...), so
    its state dict names the same tensors twice; safetensors refuses shared memory.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name in sorted(state_dict, key=lambda n: (len(n), n)):
        t = state_dict[name].detach().cpu()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = t.contiguous()
    shared = {k[0] for k in seen if sum(1 for j in seen if j[0] == k[0]) > 1}
    for name, t in unique.items():  # partial overlaps (not one view): stored as copies
        if t.untyped_storage().data_ptr() in shared:
            unique[name] = t.clone()
    return unique, aliases


def is_weights_path(path: str | os.PathLike) -> bool:
    """True for a ``.safetensors`` file or a folder holding ``model.safetensors``."""
    p = Path(path)
    return p.suffix == ".safetensors" or (p.is_dir() and (p / WEIGHTS_NAME).is_file())


def model_card(ckpt: Any) -> dict[str, Any]:
    """The JSON model card of a :class:`~medcl.engine.checkpoint.CheckpointData`."""
    return {
        "format": FORMAT,
        "family": ckpt.family,
        "config": json_safe(ckpt.config),
        "label_map": json_safe(ckpt.label_map),
        "versions": dict(ckpt.versions),
        "extra": json_safe(ckpt.extra),
        "training_data": training_data(ckpt.family, ckpt.config),
        "source": Path(ckpt.path).name,
    }


def training_data(family: str, config: dict[str, Any]) -> str:
    """What the model was trained on, as far as its config says (synthetic data is named as such)."""
    data = config.get("data") or {}
    if family == "zones" and not data.get("datalist"):
        return "synthetic prostate phantoms (medcl data synth zones); not for clinical use"
    where = str(data.get("root") or data.get("datalist") or data.get("manifest") or "unknown")
    note = " (synthetic)" if "synth" in where.lower() else ""
    return f"{where}{note}"


def write_weights(ckpt: Any, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/model.safetensors`` (card in its metadata) and ``out_dir/config.json``."""
    from medcl.utils import atomic_write_path, write_json

    save_file = _safetensors().torch.save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors, aliases = split_aliases(ckpt.state_dict)
    full = {**tensors, **{a: tensors[n] for a, n in aliases.items()}}
    card = {**model_card(ckpt), "aliases": aliases, "weights_sha256": tensors_digest(full)}
    with atomic_write_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"medcl": json.dumps(card)})
    write_json(out / CARD_NAME, card)
    return out / WEIGHTS_NAME


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise MedclError("weights files need safetensors (pip install 'medcl[export]')") from None
    return safetensors


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The model card in a weights file's header (no tensors are read)."""
    safe_open = _safetensors().safe_open
    path = _weights_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        card = json.loads(meta["medcl"])
    except Exception as exc:  # noqa: BLE001 - damaged header, no card, bad JSON
        raise MedclError(f"{path}: not a medcl weights file ({_reason(exc)})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise MedclError(f"{path}: not a medcl weights file (format {card.get('format')!r})")
    return card


def load_weights(path: str | os.PathLike, family: str | None) -> Any:
    """Load a weights file as :class:`~medcl.engine.checkpoint.CheckpointData`, checking family and digest.

    Raises:
        MedclError: missing, damaged or edited file, or another family's weights.
    """
    from medcl.engine.checkpoint import CheckpointData

    load_file = _safetensors().torch.load_file

    path = _weights_file(path)
    card = read_card(path)
    family = family or card.get("family")
    if card.get("family") != family:
        raise MedclError(f"{path}: weights are of family '{card.get('family')}', expected '{family}'")
    try:
        tensors = load_file(str(path))
        aliases = card.get("aliases") or {}
        tensors.update({a: tensors[n] for a, n in aliases.items()})
    except Exception as exc:  # noqa: BLE001 - truncated data section, alias of a missing tensor
        raise MedclError(f"{path}: damaged weights file ({_reason(exc)})") from None
    if tensors_digest(tensors) != card.get("weights_sha256"):
        raise MedclError(f"{path}: weights do not match their recorded SHA-256 (file edited or damaged)")
    return CheckpointData(path=path, family=family, config=card.get("config") or {}, state_dict=tensors,
                          label_map=card.get("label_map"), versions=card.get("versions") or {},
                          extra=card.get("extra") or {})


def _weights_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_NAME
    if not p.is_file():
        raise MedclError(f"{p}: weights file not found")
    return p


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:160] if text else type(exc).__name__
