"""Connected-component clean-up of zone label maps (MONAI ``KeepLargestConnectedComponent``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.transforms import KeepLargestConnectedComponent
from scipy import ndimage

ZONE_LABELS: tuple[int, ...] = (1, 2, 3, 4)
"""Foreground labels of the zone map: 1 PZ, 2 TZ (incl. CZ), 3 DPU, 4 AFS."""


def _klcc(labels: np.ndarray, applied: Sequence[int], independent: bool) -> np.ndarray:
    transform = KeepLargestConnectedComponent(applied_labels=list(applied), is_onehot=False, independent=independent)
    return np.asarray(transform(labels[None]))[0].astype(labels.dtype, copy=False)


def keep_largest_per_zone(labels: np.ndarray, zones: Sequence[int] = ZONE_LABELS) -> np.ndarray:
    """Keep the largest connected component of each zone; other fragments become background (0).

    Args:
        labels: integer label map ``(X, Y, Z)``.
        zones: the labels treated independently.

    Returns:
        A label map of the same shape and dtype.
    """
    return _klcc(labels, zones, independent=True)


def gland_mask(labels: np.ndarray, zones: Sequence[int] = ZONE_LABELS) -> np.ndarray:
    """Whole-gland mask: the largest connected component of the union of the zones, holes filled.

    Args:
        labels: integer label map ``(X, Y, Z)``.
        zones: the labels that make up the gland.

    Returns:
        Boolean mask of the same shape.
    """
    union = np.isin(labels, zones)
    if not union.any():
        return union
    largest = _klcc(union.astype(np.uint8), (1,), independent=False) > 0
    return ndimage.binary_fill_holes(largest)
