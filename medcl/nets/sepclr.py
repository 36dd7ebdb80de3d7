"""SepCLR networks: separate common/salient ResNet encoders with projection heads, and a SimCLR baseline.

Louiset et al., "Separating common from salient patterns with contrastive representation
learning", ICLR 2024. Backbones are MONAI ``ResNet`` (``spatial_dims`` 2 or 3).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn

__all__ = ["ProjectionHead", "SepCLRNet", "SepCLROutput", "SimCLRNet", "build_encoder"]

#: blocks per stage and block type of the MONAI ResNet depths offered here.
_DEPTHS: dict[int, tuple[str, list[int]]] = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}


def build_encoder(
    out_dim: int,
    spatial_dims: int = 2,
    in_channels: int = 1,
    depth: int = 18,
    width: int = 64,
    cifar_stem: bool = True,
) -> ResNet:
    """A MONAI ResNet mapping an image to an ``out_dim`` vector.

    Args:
        out_dim: embedding size (the ResNet's final linear layer).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        depth: 10, 18, 34 or 50.
        width: channels of the first stage (stages use ``width * (1, 2, 4, 8)``).
        cifar_stem: 3x3 stride-1 first conv and no max-pool (for 32x32 inputs); else 7x7 stride 2.
    """
    if depth not in _DEPTHS:
        raise ValueError(f"unsupported ResNet depth {depth}; expected one of {sorted(_DEPTHS)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    block, layers = _DEPTHS[depth]
    return ResNet(
        block=block,
        layers=layers,
        block_inplanes=[width, 2 * width, 4 * width, 8 * width],
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=3 if cifar_stem else 7,
        conv1_t_stride=1 if cifar_stem else 2,
        no_max_pool=cifar_stem,
        num_classes=out_dim,
    )


class ProjectionHead(nn.Sequential):
    """``Linear(d, hidden) - BatchNorm - ReLU - Linear(hidden, d)`` (SepCLR/SimCLR projection head)."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class SepCLROutput(NamedTuple):
    """Encoder outputs ``c``, ``s`` (exported, probed) and head outputs ``zc`` (L2-normalised), ``zs``."""

    c: torch.Tensor
    s: torch.Tensor
    zc: torch.Tensor
    zs: torch.Tensor


class SepCLRNet(nn.Module):
    """Two separate encoders (no weight sharing) for the common and salient spaces (SepCLR).

    Args:
        common_dim: ``d_c``.
        salient_dim: ``d_s``.
        **encoder_kwargs: forwarded to :func:`build_encoder` (``spatial_dims``, ``depth``...).
    """

    def __init__(self, common_dim: int = 32, salient_dim: int = 32, **encoder_kwargs) -> None:
        super().__init__()
        self.common_encoder = build_encoder(common_dim, **encoder_kwargs)
        self.salient_encoder = build_encoder(salient_dim, **encoder_kwargs)
        self.common_head = ProjectionHead(common_dim)
        self.salient_head = ProjectionHead(salient_dim)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder outputs ``(c, s)``."""
        return self.common_encoder(x), self.salient_encoder(x)

    def salient_norm(self, x: torch.Tensor) -> torch.Tensor:
        """``||s||`` per sample, the quantity attributed by the saliency explainer."""
        return self.salient_encoder(x).norm(dim=1)

    def forward(self, x: torch.Tensor) -> SepCLROutput:
        """Encoders then heads; the common head output is L2-normalised, the salient one is not."""
        c, s = self.embed(x)
        return SepCLROutput(c, s, F.normalize(self.common_head(c), dim=1), self.salient_head(s))


class SimCLRNet(nn.Module):
    """SimCLR baseline (Chen et al. 2020): one encoder of size ``d_c + d_s`` and a projection head."""

    def __init__(self, dim: int = 64, **encoder_kwargs) -> None:
        super().__init__()
        self.encoder = build_encoder(dim, **encoder_kwargs)
        self.head = ProjectionHead(dim)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)``: encoder output and projection."""
        h = self.encoder(x)
        return h, self.head(h)
