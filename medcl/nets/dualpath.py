"""Dual-path multi-task 3D U-Net for prostate zones, and the single-path baseline.

Design section 2. The anisotropic geometry follows Meyer et al., "Towards patient-individual
PI-RADS v2 sector map: CNN for automatic segmentation of prostatic zones from T2-weighted MRI",
ISBI 2019: each path is a MONAI ``DynUNet`` with in-plane-only pooling in the early levels
(kernels ``[3, 3, 1]``, strides ``[2, 2, 1]``) for 0.5 x 0.5 x 3 mm voxels with the slice axis last. The class split between the paths is documented in :mod:`medcl.data.zones_labels`.

Every zones network returns a dict from ``forward`` and has ``zone_probabilities(x) -> (probs
(B, 5, ...), uncertainty (B, 1, ...))``; build one with :func:`build_zones_net`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args, get_type_hints

import torch
from monai.networks.nets import DynUNet
from torch import nn

from medcl.data.zones_labels import NUM_ZONES, PATH_A_NAMES, PATH_B_NAMES
from medcl.errors import MedclError

# Indices of the path classes (see medcl.data.zones_labels).
_A_BG, _A_PZ, _A_TZ = range(3)
_B_BG, _B_TZ, _B_DPU, _B_AFS = range(4)


@dataclass
class ZonesNetSpec:
    """Architecture settings shared by the dual-path net and the baseline: the one definition of these
    fields, their defaults and checks (the ``model:`` section of the zones config is derived from it).

    Attributes:
        arch: ``"dualpath"`` or ``"baseline"`` (single 5-class U-Net).
        in_channels: input channels (1 for T2w).
        filters: channels per level, e.g. ``[16, 32, 64, 128]``.
        kernel_sizes: per-level convolution kernels (``[3, 3, 1]`` = in-plane only).
        strides: per-level strides; the first is 1, ``[2, 2, 1]`` pools in-plane only.
        aux: auxiliary target of the dual-path net: ``"mask"`` (gland, logits), ``"sdm"``
            (signed distance, raw output; the loss applies ``tanh``) or ``"none"``.
        uncertainty: ``"disagreement"`` (path disagreement on the shared classes) or
            ``"entropy"`` (normalised entropy of the fused probabilities). The baseline always
            uses entropy.
        dropout: dropout probability inside the U-Net blocks.
        res_block: residual blocks instead of plain double convolutions.
    """

    arch: Literal["dualpath", "baseline"] = "dualpath"
    in_channels: int = 1
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    kernel_sizes: list[list[int]] = field(
        default_factory=lambda: [[3, 3, 1], [3, 3, 1], [3, 3, 3], [3, 3, 3]]
    )
    strides: list[list[int]] = field(default_factory=lambda: [[1, 1, 1], [2, 2, 1], [2, 2, 1], [2, 2, 2]])
    aux: Literal["mask", "sdm", "none"] = "mask"
    uncertainty: Literal["disagreement", "entropy"] = "disagreement"
    dropout: float = 0.0
    res_block: bool = False

    def __post_init__(self) -> None:
        n = len(self.filters)
        if len(self.kernel_sizes) != n or len(self.strides) != n:
            raise MedclError(
                f"model: filters, kernel_sizes and strides need one entry per level; got "
                f"{n}, {len(self.kernel_sizes)}, {len(self.strides)}"
            )
        hints = get_type_hints(ZonesNetSpec)
        for name in ("arch", "aux", "uncertainty"):
            _check_choice(f"model.{name}", getattr(self, name), get_args(hints[name]))
        if self.in_channels < 1:
            raise MedclError(f"model.in_channels: must be at least 1, got {self.in_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise MedclError(f"model.dropout: must be in [0, 1), got {self.dropout}")

    @property
    def divisor(self) -> list[int]:
        """Per-axis factor that input sizes must be divisible by (product of the strides)."""
        return [math.prod(s[d] for s in self.strides) for d in range(3)]


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise MedclError(f"{key}: {value!r} is not one of {list(choices)}")


def _unet(spec: ZonesNetSpec, out_channels: int) -> DynUNet:
    """One anisotropic MONAI ``DynUNet`` path (instance norm, leaky ReLU, no deep supervision)."""
    return DynUNet(
        spatial_dims=3,
        in_channels=spec.in_channels,
        out_channels=out_channels,
        kernel_size=spec.kernel_sizes,
        strides=spec.strides,
        upsample_kernel_size=spec.strides[1:],
        filters=spec.filters,
        dropout=spec.dropout or None,
        res_block=spec.res_block,
    )


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy over the channel axis divided by ``log C`` (in [0, 1]), shape ``(B, 1, ...)``."""
    ent = -(probs * torch.log(probs.clamp_min(1e-8))).sum(1, keepdim=True)
    return ent / math.log(probs.shape[1])


def shared_disagreement(prob_a: torch.Tensor, prob_b: torch.Tensor) -> torch.Tensor:
    """Signed disagreement of the paths on their shared classes, shape ``(B, 1, ...)``.

    Path A's TZ covers TZ u DPU, path B's TZ and DPU split it, so the TZ estimates differ by
    ``d = p_B(TZ) + p_B(DPU) - p_A(TZ)``. The BG estimates (``p_A(BG) - p_B(AFS)`` and
    ``p_B(BG) - p_A(PZ)``) differ by the same ``d`` because each path's probabilities sum to 1.
    """
    return prob_b[:, _B_TZ : _B_TZ + 1] + prob_b[:, _B_DPU : _B_DPU + 1] - prob_a[:, _A_TZ : _A_TZ + 1]


def fuse_paths(prob_a: torch.Tensor, prob_b: torch.Tensor) -> torch.Tensor:
    """Fuse path A ``(B, 3, ...)`` and path B ``(B, 4, ...)`` probabilities into 5 zones.

    Fusion rule: PZ from A; DPU and AFS from B; TZ = mean of B's TZ and A's TZ minus B's DPU;
    BG = mean of (A's BG minus B's AFS) and (B's BG minus A's PZ). Before clamping the five
    values sum to 1 exactly; negatives (possible when the paths disagree) are clamped to 0 and
    the result renormalised. When both paths are the merges of one 5-class distribution
    (see :mod:`medcl.data.zones_labels`), the fusion returns that distribution.
    """
    pz = prob_a[:, _A_PZ]
    dpu, afs = prob_b[:, _B_DPU], prob_b[:, _B_AFS]
    tz = 0.5 * (prob_b[:, _B_TZ] + prob_a[:, _A_TZ] - dpu)
    bg = 0.5 * (prob_a[:, _A_BG] - afs + prob_b[:, _B_BG] - pz)
    fused = torch.stack([bg, pz, tz, dpu, afs], dim=1).clamp_min(0.0)
    return fused / fused.sum(1, keepdim=True).clamp_min(1e-8)


class DualPathZonesNet(nn.Module):
    """Two anisotropic 3D U-Net paths plus an auxiliary whole-gland head.

    Path A predicts {BG, PZ, TZ}, path B {BG, TZ, DPU, AFS}. The auxiliary head is one extra
    1x1x1 output channel on each path's last decoder features; ``aux`` is the mean of the two
    (gland-mask logits or signed-distance regression, see :class:`ZonesNetSpec`).

    Args:
        spec: architecture settings.
    """

    def __init__(self, spec: ZonesNetSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or ZonesNetSpec()
        self.n_aux = 0 if self.spec.aux == "none" else 1
        self.path_a = _unet(self.spec, len(PATH_A_NAMES) + self.n_aux)
        self.path_b = _unet(self.spec, len(PATH_B_NAMES) + self.n_aux)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"a": (B,3,...), "b": (B,4,...)}`` logits and ``"aux"`` (B,1,...) if enabled."""
        out_a, out_b = self.path_a(x), self.path_b(x)
        na, nb = len(PATH_A_NAMES), len(PATH_B_NAMES)
        result = {"a": out_a[:, :na], "b": out_b[:, :nb]}
        if self.n_aux:
            result["aux"] = 0.5 * (out_a[:, na:] + out_b[:, nb:])
        return result

    @staticmethod
    def path_probabilities(outputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax of each path's logits (float32, AMP-safe)."""
        return outputs["a"].float().softmax(1), outputs["b"].float().softmax(1)

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused 5-zone probabilities ``(B, 5, ...)`` and uncertainty ``(B, 1, ...)`` in [0, 1].

        Uncertainty ``"disagreement"`` is ``|d|`` of :func:`shared_disagreement` (equal to
        ``(|dTZ| + |dBG|) / 2``); ``"entropy"`` is the normalised entropy of the fused output.
        """
        prob_a, prob_b = self.path_probabilities(self(x))
        fused = fuse_paths(prob_a, prob_b)
        if self.spec.uncertainty == "entropy":
            return fused, normalised_entropy(fused)
        return fused, shared_disagreement(prob_a, prob_b).abs()


class BaselineZonesNet(nn.Module):
    """Single-path 5-class anisotropic 3D U-Net: the baseline of the ablations (design section 2).

    Args:
        spec: architecture settings (``aux`` and ``uncertainty`` are ignored).
    """

    def __init__(self, spec: ZonesNetSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or ZonesNetSpec(arch="baseline")
        self.net = _unet(self.spec, NUM_ZONES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"fused": logits (B, 5, ...)}``."""
        return {"fused": self.net(x)}

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax probabilities ``(B, 5, ...)`` and normalised entropy ``(B, 1, ...)``."""
        probs = self(x)["fused"].float().softmax(1)
        return probs, normalised_entropy(probs)


def spec_from_config(model_cfg: Mapping[str, Any] | Any | None) -> ZonesNetSpec:
    """Build a :class:`ZonesNetSpec` from a mapping or a pydantic model (extra keys ignored)."""
    if model_cfg is None:
        return ZonesNetSpec()
    if hasattr(model_cfg, "model_dump"):
        model_cfg = model_cfg.model_dump()
    names = {f.name for f in fields(ZonesNetSpec)}
    return ZonesNetSpec(**{k: v for k, v in dict(model_cfg).items() if k in names})


def build_zones_net(model_cfg: Mapping[str, Any] | Any | None = None) -> DualPathZonesNet | BaselineZonesNet:
    """Build the zones network named by ``model_cfg["arch"]`` (``dualpath`` or ``baseline``)."""
    spec = spec_from_config(model_cfg)
    return DualPathZonesNet(spec) if spec.arch == "dualpath" else BaselineZonesNet(spec)


__all__ = [
    "BaselineZonesNet",
    "DualPathZonesNet",
    "ZonesNetSpec",
    "build_zones_net",
    "fuse_paths",
    "normalised_entropy",
    "shared_disagreement",
    "spec_from_config",
]
