"""Zones inference geometry: the millimetre ROI, the sliding-window size and flip TTA.

This module imports only numpy, nibabel, torch and MONAI (never ``medcl``): ``medcl zones segment``
uses it and ``medcl export --format bundle`` copies it unchanged into the bundle's ``scripts/``,
so both run the same code. Recipe: Meyer et al., ISBI 2019 (ROI-cropped anisotropic U-Net).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference

__all__ = ["DEFAULT_MAX_WINDOW", "DEFAULT_ROI_MM", "flip_tta_sliding_window", "native_roi", "round_up", "voxel_spacing", "window_size"]

DEFAULT_ROI_MM: tuple[float, float, float] = (80.0, 80.0, 120.0)
"""Centred region of interest in mm along the RAS axes."""
DEFAULT_MAX_WINDOW: tuple[int, int, int] = (160, 160, 48)
"""Largest sliding window in voxels of the canonical grid."""


def voxel_spacing(affine: Any) -> np.ndarray:
    """Voxel size in mm per array axis (column norms of the affine)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def native_roi(affine: Any, roi_mm: Sequence[float]) -> list[int]:
    """ROI size in voxels of a RAS-oriented grid: ``roi_mm`` (RAS axes) over each axis's voxel size."""
    import nibabel as nib

    ras_axis = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))[:, 0].astype(int)
    roi = np.empty(3, dtype=np.int64)
    roi[ras_axis] = np.ceil(np.asarray(roi_mm, dtype=np.float64)[ras_axis] / voxel_spacing(affine))
    return roi.tolist()


def round_up(value: int, divisor: int) -> int:
    """``value`` rounded up to a multiple of ``divisor``."""
    return int(math.ceil(value / divisor) * divisor)


def window_size(shape: Sequence[int], max_window: Sequence[int], divisor: Sequence[int]) -> tuple[int, ...]:
    """Sliding-window size: the image rounded up to the divisor, capped at ``max_window`` (also rounded)."""
    return tuple(min(round_up(w, d), round_up(s, d)) for s, w, d in zip(shape, max_window, divisor))


def flip_tta_sliding_window(
    x: torch.Tensor,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    window: Sequence[int],
    sw_batch_size: int = 2,
    overlap: float = 0.25,
    tta: bool = True,
) -> torch.Tensor:
    """Gaussian-blended sliding window over ``x`` ``(1, C, ...)``, averaged with its left-right mirror.

    The scan and its mirror (axis 2, RAS left-right) run as one batch; the mirror's output is
    flipped back before averaging.
    """
    batch = torch.cat([x, x.flip(2)]) if tta else x
    out = sliding_window_inference(batch, tuple(window), sw_batch_size, predictor, overlap=overlap,
                                   mode="gaussian").float()
    return 0.5 * (out[:1] + out[1:].flip(2)) if tta else out
