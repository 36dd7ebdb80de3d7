"""Device and precision policy: bf16-mixed on GPUs that support it, fp32 on CPU."""

from __future__ import annotations

import os

import torch

from medcl.errors import MedclError


def local_rank() -> int:
    """This process's GPU index under torchrun (``LOCAL_RANK``), 0 outside it."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def parse_device(name: str) -> torch.device:
    """``torch.device(name)``, with a one-line :class:`MedclError` naming ``--device`` for a bad name."""
    try:
        return torch.device(name)
    except RuntimeError:
        raise MedclError(f"--device {name}: not a device name (use auto, cpu, cuda, cuda:1)") from None


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> this process's CUDA device (``cuda:LOCAL_RANK``, 0 outside torchrun) when present,
    else CPU; otherwise ``torch.device(name)``.

    Raises:
        MedclError: not a device name, or a CUDA device asked for where CUDA is not available.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank())
        return torch.device("cpu")
    device = parse_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedclError(f"--device {name}: CUDA is not available on this machine")
    return device


def gpu_supports_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def default_precision(accelerator: str = "auto") -> str:
    """The Lightning precision string medcl uses when the config leaves it unset."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu and gpu_supports_bf16() else "32-true"


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for inference on ``device`` (None: run in fp32)."""
    return torch.bfloat16 if device.type == "cuda" and gpu_supports_bf16() else None
