"""The zone post-processing chain used at inference: largest components, then gap filling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medcl.postprocess.components import ZONE_LABELS, gland_mask, keep_largest_per_zone
from medcl.postprocess.gapfill import bounding_box, fill_gaps


def clean_zones(labels: np.ndarray, spacing: Sequence[float], zones: Sequence[int] = ZONE_LABELS) -> np.ndarray:
    """Make zones disjoint, connected and gland-filling.

    Steps: the gland is the largest connected component of all zones (holes filled); each zone
    keeps its largest component; voxels left without a zone inside the gland get the zone of
    smallest signed distance (:func:`medcl.postprocess.gapfill.fill_gaps`). Work happens inside
    the bounding box of the labelled voxels.

    Args:
        labels: integer label map ``(X, Y, Z)`` (argmax of the zone probabilities).
        spacing: voxel size in mm.
        zones: foreground labels.

    Returns:
        The cleaned ``uint8`` label map.
    """
    labels = np.asarray(labels).astype(np.uint8)
    out = np.zeros_like(labels)
    if not np.isin(labels, zones).any():
        return out
    box = bounding_box(np.isin(labels, zones))
    sub = np.where(np.isin(labels[box], zones), labels[box], 0).astype(np.uint8)
    out[box] = fill_gaps(keep_largest_per_zone(sub, zones), gland_mask(sub, zones), spacing, zones)
    return out
