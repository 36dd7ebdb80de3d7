"""Zone volumes in millilitres from the native voxel size."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from medcl.data.zones_labels import ZONE_NAMES as _LABEL_NAMES

# Label value -> name of the four zones (background left out), from the one list in medcl.data.zones_labels.
ZONE_NAMES: dict[int, str] = {value: name for value, name in enumerate(_LABEL_NAMES) if value > 0}


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in mL (``|det(affine[:3, :3])|`` mm^3 / 1000)."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])) / 1000.0)


def zone_volumes(labels: np.ndarray, affine: np.ndarray, names: Mapping[int, str] = ZONE_NAMES) -> dict:
    """Volume per zone and of the whole gland (union of the zones).

    Args:
        labels: integer label map.
        affine: 4x4 voxel-to-world matrix of the label map (mm).
        names: label value -> zone name.

    Returns:
        ``{"unit": "mL", "voxel_volume_ml", "zones": {name: mL}, "voxels": {name: n}, "gland": mL}``.
    """
    flat = np.asarray(labels).astype(np.int64).ravel()
    counts = np.bincount(flat, minlength=max(names) + 1)
    vox = voxel_volume_ml(affine)
    voxels = {name: int(counts[label]) for label, name in names.items()}
    return {
        "unit": "mL",
        "voxel_volume_ml": vox,
        "zones": {name: n * vox for name, n in voxels.items()},
        "voxels": voxels,
        "gland": sum(voxels.values()) * vox,
    }
