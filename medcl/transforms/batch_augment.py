"""Two-view augmentation of whole batches on the training device (kornia + vectorised torch).

Contrastive training (SimCLR, SepCLR) sees two independently augmented views of each sample. Here
every random parameter is drawn per sample, but each operation runs once on the whole ``(B, C,
*spatial)`` batch on the device the batch lives on (no per-sample Python loop). Presets:

- ``basic``: 2D: reflect-pad 4 px + random crop, intensity scaling, gamma, noise; 3D: random
  affine (+-10 degrees, +-3 voxels, 0.9-1.1 scale), a left-right flip, bias field, gamma, Gaussian
  smoothing and noise (the MONAI chain medcl used per sample before, now batched).
- ``paper``: the augmentations of the official SepCLR code (Louiset et al., ICLR 2024), the SimCLR
  recipe (Chen et al., ICML 2020): ``RandomResizedCrop`` (area 0.2-1), horizontal flip, colour
  jitter (0.4, 0.4, 0.4, 0.1; p = 0.8), greyscale (p = 0.2) and optionally a rotation (45 degrees
  for chest X-rays). Saturation, hue and greyscale are identities on one-channel images, as in
  torchvision. The 3D analogue: a random resized crop of 20-100 % of the volume, a flip and
  brightness/contrast jitter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from medcl.config import MedclModel

__all__ = [
    "AugmentConfig",
    "RandBiasField",
    "RandBrightnessContrast",
    "RandFlip",
    "RandGamma",
    "RandNoise",
    "RandResizedCrop3d",
    "RandScaleIntensity",
    "RandSmooth",
    "build_augment",
]


class AugmentConfig(MedclModel):
    """Two-view augmentation settings (``augment:`` section); unknown keys are config errors."""

    preset: Literal["basic", "paper"] = Field("basic", description="basic: small shifts + intensity; paper: SimCLR/SepCLR")
    crop_scale: tuple[float, float] = Field((0.2, 1.0), description="paper: area (3D: volume) fraction of the crop.")
    flip_p: float = Field(0.5, ge=0, le=1, description="paper: probability of the flip.")
    flip_axis: int = Field(0, ge=0, le=2, description="Spatial axis flipped (0: image x / left-right as MONAI loads).")
    color_jitter: tuple[float, float, float, float] = Field(
        (0.4, 0.4, 0.4, 0.1), description="paper: brightness, contrast, saturation, hue (torchvision ColorJitter)."
    )
    color_jitter_p: float = Field(0.8, ge=0, le=1)
    grayscale_p: float = Field(0.2, ge=0, le=1, description="paper: RGB images turned grey (2D).")
    rotation_degrees: float = Field(0.0, ge=0, le=180, description="paper: random rotation range (45 for chest X-rays).")

    @field_validator("crop_scale")
    @classmethod
    def _check_scale(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1] <= 1:
            raise ValueError(f"expected 0 < low <= high <= 1, got {list(value)}")
        return value


def _draw(x: torch.Tensor, p: float) -> torch.Tensor:
    """A per-sample Bernoulli(p) mask broadcastable over ``x`` (``(B, 1, 1, ...)``)."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, *([1] * (x.ndim - 1)))


def _uniform(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Per-sample uniform values in ``[lo, hi]``, shaped ``(B, 1, 1, ...)``."""
    return torch.empty(x.shape[0], device=x.device, dtype=x.dtype).uniform_(lo, hi).view(-1, *([1] * (x.ndim - 1)))


class RandFlip(nn.Module):
    """Flip spatial axis ``axis`` of each sample with probability ``p``."""

    def __init__(self, axis: int = 0, p: float = 0.5) -> None:
        super().__init__()
        self.axis, self.p = axis, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_draw(x, self.p), x.flip(2 + self.axis), x)


class RandScaleIntensity(nn.Module):
    """``x * (1 + u)``, ``u ~ U(-factor, factor)`` per sample, with probability ``p`` (MONAI ``RandScaleIntensity``)."""

    def __init__(self, factor: float = 0.2, p: float = 0.5) -> None:
        super().__init__()
        self.factor, self.p = factor, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_draw(x, self.p), x * (1 + _uniform(x, -self.factor, self.factor)), x)


class RandGamma(nn.Module):
    """Gamma on the per-sample min-max range (MONAI ``RandAdjustContrast``), with probability ``p``."""

    def __init__(self, gamma: tuple[float, float] = (0.7, 1.4), p: float = 0.5) -> None:
        super().__init__()
        self.gamma, self.p = gamma, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        shape = (-1, *([1] * (x.ndim - 1)))
        lo, hi = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
        span = (hi - lo).clamp_min(1e-7)
        out = ((x - lo) / span).clamp(0, 1) ** _uniform(x, *self.gamma) * span + lo
        return torch.where(_draw(x, self.p), out, x)


class RandNoise(nn.Module):
    """Gaussian noise of a per-sample std ``~ U(0, std)`` with probability ``p`` (MONAI ``RandGaussianNoise``)."""

    def __init__(self, std: float = 0.03, p: float = 0.5) -> None:
        super().__init__()
        self.std, self.p = std, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(_draw(x, self.p), x + torch.randn_like(x) * _uniform(x, 0.0, self.std), x)


class RandSmooth(nn.Module):
    """Separable Gaussian smoothing with a per-sample, per-axis sigma ``~ U(*sigma)`` voxels, with
    probability ``p`` (MONAI ``RandGaussianSmooth``); one grouped convolution per axis for the batch."""

    def __init__(self, sigma: tuple[float, float] = (0.25, 1.0), p: float = 0.2, truncated: float = 4.0) -> None:
        super().__init__()
        self.sigma, self.p, self.radius = sigma, p, math.ceil(truncated * sigma[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        nd, r = len(spatial), self.radius
        offsets = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        conv = F.conv3d if nd == 3 else F.conv2d
        out = x.reshape(1, b * c, *spatial)
        for axis in range(nd):
            sig = torch.empty(b, device=x.device, dtype=x.dtype).uniform_(*self.sigma)
            kernel = torch.exp(-0.5 * (offsets[None] / sig[:, None]) ** 2)
            kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b * c, 2r + 1)
            shape = [b * c, 1] + [1] * nd
            shape[2 + axis] = 2 * r + 1
            pad = [0] * (2 * nd)
            pad[2 * (nd - 1 - axis)] = pad[2 * (nd - 1 - axis) + 1] = r  # F.pad lists the last axis first
            out = conv(F.pad(out, pad, mode="replicate"), kernel.view(shape), groups=b * c)
        return torch.where(_draw(x, self.p), out.view_as(x), x)


class RandBiasField(nn.Module):
    """Multiplicative smooth intensity field ``exp(sum_t c_t P_t)`` over products of Legendre
    polynomials of total degree <= ``degree`` on [-1, 1]^d, ``c_t ~ U(*coeff)`` per sample, with
    probability ``p`` (MONAI ``RandBiasField``'s model); one einsum for the batch."""

    def __init__(self, degree: int = 3, coeff: tuple[float, float] = (0.0, 0.1), p: float = 0.3) -> None:
        super().__init__()
        self.degree, self.coeff, self.p = degree, coeff, p

    @staticmethod
    def _legendre(g: torch.Tensor, degree: int) -> list[torch.Tensor]:
        polys = [torch.ones_like(g), g]
        for n in range(1, degree):  # Bonnet's recursion
            polys.append(((2 * n + 1) * g * polys[n] - n * polys[n - 1]) / (n + 1))
        return polys[: degree + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        axes = [self._legendre(torch.linspace(-1, 1, n, device=x.device, dtype=x.dtype), self.degree) for n in spatial]
        basis = []
        for orders in itertools.product(range(self.degree + 1), repeat=len(spatial)):
            if sum(orders) <= self.degree:
                term = axes[0][orders[0]]
                for axis in range(1, len(spatial)):
                    term = term.unsqueeze(-1) * axes[axis][orders[axis]]
                basis.append(term)
        coeffs = torch.empty(x.shape[0], len(basis), device=x.device, dtype=x.dtype).uniform_(*self.coeff)
        field = torch.exp(torch.einsum("bt,t...->b...", coeffs, torch.stack(basis)))[:, None]
        return torch.where(_draw(x, self.p), x * field, x)


class RandBrightnessContrast(nn.Module):
    """torchvision ``ColorJitter`` brightness and contrast for any dimensionality, unclamped (MRI
    intensities need not lie in [0, 1]): ``x * b``, then ``m + c (x - m)`` with ``m`` the sample's
    mean; ``b ~ U(1 - brightness, 1 + brightness)``, ``c`` likewise; both with probability ``p``."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, p: float = 0.8) -> None:
        super().__init__()
        self.brightness, self.contrast, self.p = brightness, contrast, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * _uniform(x, max(0.0, 1 - self.brightness), 1 + self.brightness)
        mean = out.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
        out = mean + _uniform(x, max(0.0, 1 - self.contrast), 1 + self.contrast) * (out - mean)
        return torch.where(_draw(x, self.p), out, x)


class RandResizedCrop3d(nn.Module):
    """Random resized crop of a volume: a cube-shaped region holding a ``U(*scale)`` fraction of the
    volume, placed uniformly inside it, resampled (trilinear) to the input size. The 3D analogue of
    torchvision's ``RandomResizedCrop`` with aspect ratio 1."""

    def __init__(self, scale: tuple[float, float] = (0.2, 1.0)) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        side = torch.empty(b, device=x.device).uniform_(*self.scale) ** (1 / 3)  # fraction of each axis
        centre = (torch.rand(b, 3, device=x.device) * 2 - 1) * (1 - side)[:, None]  # crop stays inside
        theta = torch.zeros(b, 3, 4, device=x.device)
        theta[:, :, :3] = torch.diag_embed(side[:, None].expand(b, 3))
        theta[:, :, 3] = centre
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _basic(spatial_size: Sequence[int]) -> list[nn.Module]:
    import kornia.augmentation as K

    if len(spatial_size) == 2:
        crop = K.RandomCrop(tuple(spatial_size), padding=4, padding_mode="reflect", p=1.0)
        return [crop, RandScaleIntensity(0.2, 0.5), RandGamma((0.7, 1.4), 0.5), RandNoise(0.03, 0.5)]
    shift = tuple(3.0 / s for s in spatial_size)
    return [K.RandomAffine3D(10.0, translate=shift, scale=(0.9, 1.1), p=0.8), RandFlip(0, 0.5),
            RandBiasField(3, (0.0, 0.1), 0.3), RandGamma((0.7, 1.4), 0.5), RandSmooth((0.25, 1.0), 0.2),
            RandNoise(0.03, 0.5)]  # fmt: skip


def _paper(cfg: AugmentConfig, spatial_size: Sequence[int], channels: int) -> list[nn.Module]:
    import kornia.augmentation as K

    brightness, contrast, saturation, hue = cfg.color_jitter
    if len(spatial_size) == 3:
        return [RandResizedCrop3d(cfg.crop_scale), RandFlip(cfg.flip_axis, cfg.flip_p),
                RandBrightnessContrast(brightness, contrast, cfg.color_jitter_p)]  # fmt: skip
    ops: list[nn.Module] = [K.RandomResizedCrop(tuple(spatial_size), scale=cfg.crop_scale),
                            RandFlip(cfg.flip_axis, cfg.flip_p)]  # fmt: skip
    if channels == 3:
        ops += [K.ColorJitter(brightness, contrast, saturation, hue, p=cfg.color_jitter_p),
                K.RandomGrayscale(p=cfg.grayscale_p)]  # fmt: skip
    else:  # saturation, hue and greyscale leave a one-channel image unchanged (torchvision semantics)
        ops.append(K.ColorJitter(brightness, contrast, 0.0, 0.0, p=cfg.color_jitter_p))
    if cfg.rotation_degrees > 0:
        ops.append(K.RandomRotation(cfg.rotation_degrees, p=1.0))
    return ops


def build_augment(cfg: AugmentConfig, spatial_size: Sequence[int], channels: int = 1) -> nn.Sequential:
    """The batched augmentation of one view: call it twice on a batch for two independent views.

    Args:
        cfg: the ``augment`` config section.
        spatial_size: ``(H, W)`` or ``(X, Y, Z)`` of the (preprocessed) batch.
        channels: image channels (colour jitter on saturation/hue and greyscale need 3).
    """
    ops = _basic(spatial_size) if cfg.preset == "basic" else _paper(cfg, spatial_size, channels)
    return nn.Sequential(*ops)
