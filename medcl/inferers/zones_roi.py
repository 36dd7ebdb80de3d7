"""Automatic region of interest of the zones segmenter, and the quality flags of its outputs.

The gland is localised by a coarse pass of the same zones network over the whole field of view
(the two-stage "localise, then segment a crop" scheme of cascaded segmenters, e.g. nnU-Net's
cascade, Isensee et al., Nat. Methods 2021): the gland probability (1 - P(background)) on a
low-resolution grid is thresholded, its largest connected component gives a bounding box, and
the crop is that box plus a margin, at least ``roi_mm`` large. The helpers here are pure numpy
on RAS-oriented grids; :class:`medcl.inferers.zones_segmenter.ZonesSegmenter` runs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

GLAND_ML_RANGE: tuple[float, float] = (5.0, 300.0)
"""Plausible whole-gland volume in ml (small gland after therapy .. large BPH); outside it is flagged."""


@dataclass
class RoiBox:
    """The crop of one scan on its RAS-oriented voxel grid.

    Attributes:
        start: first voxel per RAS axis (inclusive).
        end: last voxel + 1 per RAS axis.
        shape: the RAS-oriented grid size.
        mode: ``"auto"``, ``"center"``, or ``"center (gland not found)"``.
        center_mm: world (RAS) coordinates of the box centre.
    """

    start: list[int]
    end: list[int]
    shape: list[int]
    mode: str
    center_mm: list[float] = field(default_factory=list)


def ras_volume(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` reoriented to the closest RAS axes (index grows to patient right, anterior, superior)
    and its voxel size in mm along those axes."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return nib.orientations.apply_orientation(volume, ornt), spacing


def gland_bbox_mm(gland_prob: np.ndarray, affine: np.ndarray, threshold: float = 0.5) -> np.ndarray | None:
    """World (RAS mm) corners ``(2, 3)`` of the largest component of ``gland_prob > threshold``.

    Args:
        gland_prob: gland probability on a RAS-aligned grid ``(X, Y, Z)``.
        affine: that grid's voxel-to-world affine (axis-aligned, positive diagonal).
        threshold: probability threshold.

    Returns:
        ``[[lo_x, lo_y, lo_z], [hi_x, hi_y, hi_z]]`` covering whole voxels, or ``None`` if empty.
    """
    mask = np.asarray(gland_prob) > threshold
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    idx = np.argwhere(labels == int(np.argmax(sizes)) + 1)
    corners = np.stack([idx.min(0) - 0.5, idx.max(0) + 0.5])
    world = np.c_[corners, np.ones(2)] @ np.asarray(affine, dtype=np.float64).T
    return np.sort(world[:, :3], axis=0)


MAX_ROI_FACTOR = 1.5
"""The automatic crop is at most this many times ``roi_mm`` per axis (a larger "gland" is implausible
and flagged by its volume; the cap bounds the time and memory of a poorly localised scan)."""


def box_around(
    bbox_mm: np.ndarray, affine: np.ndarray, shape: Sequence[int], roi_mm: Sequence[float], margin_mm: float
) -> RoiBox:
    """The crop (RAS voxel indices) centred on ``bbox_mm``: the box plus ``margin_mm``, at least ``roi_mm``
    and at most :data:`MAX_ROI_FACTOR` times ``roi_mm``.

    Args:
        bbox_mm: world corners from :func:`gland_bbox_mm`.
        affine: voxel-to-world affine of the RAS-oriented scan.
        shape: its size in voxels.
        roi_mm: the smallest crop in mm per RAS axis.
        margin_mm: margin around the gland on each side.
    """
    affine = np.asarray(affine, dtype=np.float64)
    center_mm = bbox_mm.mean(0)
    roi = np.asarray(roi_mm, dtype=np.float64)
    size_mm = np.clip(bbox_mm[1] - bbox_mm[0] + 2 * margin_mm, roi, MAX_ROI_FACTOR * roi)
    center_vox = (np.linalg.inv(affine) @ np.r_[center_mm, 1.0])[:3]
    half = np.ceil(size_mm / np.abs(np.diag(affine)[:3]) / 2.0)
    start = np.clip(np.round(center_vox - half), 0, np.asarray(shape)).astype(int)
    end = np.clip(np.round(center_vox + half) + 1, 0, np.asarray(shape)).astype(int)
    return RoiBox(start.tolist(), end.tolist(), list(map(int, shape)), "auto", center_mm.round(2).tolist())


def centred_box(affine: np.ndarray, shape: Sequence[int], roi_vox: Sequence[int], mode: str = "center") -> RoiBox:
    """The fixed crop of ``roi_vox`` voxels centred on the field of view (as MONAI ``CenterSpatialCrop``)."""
    shape_a, roi = np.asarray(shape), np.minimum(np.asarray(roi_vox), np.asarray(shape))
    start = shape_a // 2 - roi // 2
    end = start + roi
    centre = (np.asarray(affine, dtype=np.float64) @ np.r_[(start + end - 1) / 2.0, 1.0])[:3]
    return RoiBox(start.tolist(), end.tolist(), shape_a.astype(int).tolist(), mode, centre.round(2).tolist())


def quality_flags(gland_ras: np.ndarray, box: RoiBox, gland_ml: float,
                  ml_range: Sequence[float] = GLAND_ML_RANGE) -> list[str]:
    """Flags of one segmentation: the gland touches the crop border or the image border, implausible volume.

    Args:
        gland_ras: whole-gland mask on the RAS-oriented input grid (``box``'s grid); a gland
            within one voxel of a border touches it. Letters name the RAS axes.
        box: the crop the network saw.
        gland_ml: gland volume in ml.
        ml_range: plausible gland volume in ml.
    """
    flags: list[str] = []
    if not gland_ras.any():
        return ["no gland found"]
    idx = np.argwhere(gland_ras)
    lo, hi = idx.min(0), idx.max(0)
    shape, start, end = np.asarray(gland_ras.shape), np.asarray(box.start), np.asarray(box.end)
    # within one voxel: resampling onto the crop and back can lose the outermost voxel
    at_image = (lo <= 1) | (hi >= shape - 2)
    at_crop = ((lo <= start + 1) & (start > 0)) | ((hi >= end - 2) & (end < shape))
    names = "RAS"
    if at_crop.any():
        flags.append("gland touches crop border (" + "".join(n for n, a in zip(names, at_crop) if a) + ")")
    if at_image.any():
        flags.append("gland touches image border (" + "".join(n for n, a in zip(names, at_image) if a) + ")")
    if box.mode.endswith("(gland not found)"):
        flags.append("localisation found no gland; centred crop used")
    if not ml_range[0] <= gland_ml <= ml_range[1]:
        flags.append(f"implausible gland volume {gland_ml:.1f} ml (expected {ml_range[0]:g}-{ml_range[1]:g})")
    return flags
