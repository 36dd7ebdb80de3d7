"""Zone outputs for viewers: 3D Slicer segmentation NRRD, ITK-SNAP label descriptions, probabilities.

- ``<case>_zones.seg.nrrd``: Slicer's segmentation file (a label map in LPS with
  ``SegmentN_ID/Name/Color/LabelValue/Layer/Extent`` fields, written by ``slicerio``), so the
  zones open in Slicer as named, coloured segments.
- ``itksnap_labels.txt``: ITK-SNAP label description file (load with Segmentation > Import Label
  Descriptions) for ``<case>_zones.nii.gz``.
- ``<case>_probabilities.npz``: the zone probabilities (background first), float16 on the input
  grid, with the affine and channel names (as nnU-Net's ``--save_probabilities``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from medcl.utils import atomic_write_path

ZONE_COLOURS: tuple[str, ...] = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8")
"""Display colour of labels 1..4 (PZ, TZ, DPU, AFS): QC images, Slicer and ITK-SNAP files agree."""
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def zone_colour(label: int) -> tuple[float, float, float]:
    """RGB in [0, 1] of zone ``label`` (1-based, cycling through :data:`ZONE_COLOURS`)."""
    hexa = ZONE_COLOURS[(label - 1) % len(ZONE_COLOURS)].lstrip("#")
    return tuple(int(hexa[i : i + 2], 16) / 255.0 for i in (0, 2, 4))


def _extent(mask: np.ndarray) -> list[int]:
    """Slicer segment extent ``i0 i1 j0 j1 k0 k1`` (inclusive), ``0 -1 0 -1 0 -1`` when empty."""
    if not mask.any():
        return [0, -1, 0, -1, 0, -1]
    idx = np.argwhere(mask)
    return [int(v) for pair in zip(idx.min(0), idx.max(0)) for v in pair]


def write_seg_nrrd(labels: np.ndarray, affine: np.ndarray, path: str | os.PathLike, names: Mapping[int, str]) -> Path:
    """Write a label map ``(X, Y, Z)`` on the grid of the RAS ``affine`` as a Slicer ``.seg.nrrd``, atomically.

    Args:
        labels: integer zone map on the input grid.
        affine: voxel-to-RAS affine of that grid.
        path: output ``.seg.nrrd`` file.
        names: label value -> segment name (every label gets a segment, empty ones too).
    """
    import slicerio

    segmentation = {
        "voxels": np.asarray(labels, dtype=np.uint8),
        "ijkToLPS": RAS_TO_LPS @ np.asarray(affine, dtype=np.float64),
        "segments": [
            {"id": name, "name": name, "color": [round(c, 6) for c in zone_colour(value)],
             "labelValue": int(value), "layer": 0, "extent": _extent(np.asarray(labels) == value)}
            for value, name in sorted(names.items())
        ],
    }
    with atomic_write_path(path, suffix=".seg.nrrd") as tmp:
        slicerio.write_segmentation(str(tmp), segmentation, compression_level=1)  # 9 costs ~1 s a scan
    return Path(path)


def write_itksnap_labels(path: str | os.PathLike, names: Mapping[int, str]) -> Path:
    """Write an ITK-SNAP label description file (``IDX R G B A VIS MSH "LABEL"`` per line), atomically."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File (medcl zones)",
        "# Columns: IDX -R- -G- -B- -A-- VIS MSH LABEL",
        "################################################",
        '    0     0    0    0        0  0  0    "Clear Label"',
    ]
    for value, name in sorted(names.items()):
        r, g, b = (round(255 * c) for c in zone_colour(value))
        lines.append(f'{value:5d} {r:5d} {g:4d} {b:4d}        1  1  1    "{name}"')
    with atomic_write_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_probabilities(probs: np.ndarray, reference: MetaTensor, path: str | os.PathLike,
                        names: Sequence[str]) -> Path:
    """Write zone probabilities ``(C, X, Y, Z)`` on ``reference``'s grid as a compressed ``.npz``, atomically.

    NIfTI has no float16 voxel type, so the file follows nnU-Net's ``--save_probabilities``:
    ``probabilities`` (float16, channels first, the voxel order of the input file), ``affine``
    (voxel to RAS mm, float64) and ``channels`` (names, background first).
    """
    data = np.asarray(probs, dtype=np.float16)
    if data.shape[1:] != tuple(reference.shape[1:]) or data.shape[0] != len(names):
        raise ValueError(f"{path}: probabilities {data.shape} do not match {len(names)} channels on the input grid "
                         f"{tuple(reference.shape[1:])}")
    with atomic_write_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probabilities=data, affine=np.asarray(reference.affine, dtype=np.float64),
                            channels=np.asarray(list(names)))
    return Path(path)
