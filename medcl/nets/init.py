"""Initialise a 2D MONAI ResNet from a local ImageNet ResNet-18 state dict (torchvision layout).

MONAI's ``ResNet`` (basic blocks, ``[2, 2, 2, 2]``, widths 64-512, 7x7 stride-2 stem with max-pool)
names its parameters as torchvision's ``resnet18`` does (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``...), so an ImageNet state dict loads key for key (MONAI's shortcut
convolutions also have a bias, set to zero); the classifier ``fc`` is skipped (the encoder's output layer has the embedding size). For one-channel inputs the RGB
stem filters are summed over their input channels, the usual way to apply ImageNet weights to grey
images. No weights are downloaded: the file must be local (``model.init=PATH``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from medcl.errors import MedclError

__all__ = ["load_imagenet_resnet", "read_state_dict"]

_PREFIXES = ("module.", "model.", "backbone.", "encoder.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pth``/``.pt`` state dict (or a checkpoint holding ``state_dict``), loaded safely."""
    from medcl.io.checkpoint_file import safe_torch_load

    path = Path(path)
    if not path.is_file():
        raise MedclError(f"{path}: model.init weights file not found")
    obj = safe_torch_load(path, "state dict")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MedclError(f"{path}: expected a state dict of tensors")
    out = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def load_imagenet_resnet(encoder: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy every non-``fc`` tensor of the state dict at ``path`` into ``encoder``; return the loaded keys.

    Raises:
        MedclError: a missing or extra key, or a shape that does not match (naming the file and key).
    """
    weights = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    own = {k: v for k, v in encoder.state_dict().items() if not k.startswith("fc.")}
    for key in own:  # MONAI's 1x1 shortcut convs have a bias, torchvision's none: a zero bias is the same map
        if key.endswith("downsample.0.bias") and key not in weights:
            weights[key] = torch.zeros_like(own[key])
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise MedclError(f"{path}: not a ResNet-18 state dict in the torchvision layout ({what}; "
                         f"{len(missing)} missing, {len(extra)} unexpected keys)")  # fmt: skip
    stem = weights["conv1.weight"]
    if stem.ndim == 4 and stem.shape[1] == 3 and own["conv1.weight"].shape[1] == 1:
        weights["conv1.weight"] = stem.sum(dim=1, keepdim=True)
    for key, value in weights.items():
        if value.shape != own[key].shape:
            raise MedclError(f"{path}: {key} has shape {tuple(value.shape)}; the encoder expects {tuple(own[key].shape)}")
    encoder.load_state_dict({**encoder.state_dict(), **{k: v.to(own[k].dtype) for k, v in weights.items()}})
    return sorted(weights)
