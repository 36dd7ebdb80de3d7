"""Per-zone Dice / MASD / HD95 (mm, anisotropic spacing) and the explicit empty-mask policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from medcl.errors import MedclError
from medcl.metrics.segmentation import summarize_zone_metrics, zone_metrics

NAMES = {1: "PZ", 2: "TZ", 3: "DPU", 4: "AFS"}
SPACING = (0.5, 0.5, 3.0)


def _by_zone(rows):
    return {r["zone"]: r for r in rows}


def test_single_voxels_one_slice_apart_give_the_slice_spacing():
    ref, pred = np.zeros((2, 8, 8, 8), dtype=np.uint8)
    ref[3, 3, 3] = 1
    pred[3, 3, 4] = 1  # one slice away: 3.0 mm
    pred[3, 4, 4] = 2  # TZ only in the prediction
    ref[4, 3, 3] = 2
    rows = _by_zone(zone_metrics(pred, ref, SPACING, NAMES))
    assert rows["PZ"]["dice"] == 0.0
    assert rows["PZ"]["masd_mm"] == pytest.approx(3.0)
    assert rows["PZ"]["hd95_mm"] == pytest.approx(3.0)
    # TZ: (3,4,4) vs (4,3,3): sqrt(0.5^2 + 0.5^2 + 3^2)
    assert rows["TZ"]["masd_mm"] == pytest.approx(math.sqrt(0.25 + 0.25 + 9.0), rel=1e-5)


def test_dice_of_half_overlapping_blocks():
    ref, pred = np.zeros((2, 10, 10, 10), dtype=np.uint8)
    ref[2:4, 2:4, 2:4] = 1  # 8 voxels
    pred[3:5, 2:4, 2:4] = 1  # 8 voxels, 4 shared
    rows = _by_zone(zone_metrics(pred, ref, SPACING, NAMES))
    assert rows["PZ"]["dice"] == pytest.approx(0.5)
    assert rows["PZ"]["status"] == "ok"
    assert (rows["PZ"]["pred_voxels"], rows["PZ"]["ref_voxels"]) == (8, 8)


def _edges(mask):
    return mask & ~ndimage.binary_erosion(mask)


def _reference_distances(pred, ref, spacing):
    """Plain reference: surface voxels = mask minus its erosion; nearest-surface distances in mm."""
    sp = np.asarray(spacing)
    a, b = np.argwhere(_edges(pred)) * sp, np.argwhere(_edges(ref)) * sp
    d_ab, d_ba = cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]
    masd = np.concatenate([d_ab, d_ba]).mean()
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return masd, hd95


def test_distances_match_a_plain_reference_on_random_blobs():
    rng = np.random.default_rng(0)
    shape = (40, 40, 12)
    noise = ndimage.gaussian_filter(rng.normal(size=(2, *shape)), sigma=(0, 4, 4, 1))
    ref = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    core = np.zeros(shape, bool)
    core[8:32, 8:32, 2:10] = True
    ref[core & (noise[0] > -0.02)] = 1
    pred[core & (noise[1] > -0.02)] = 1
    row = _by_zone(zone_metrics(pred, ref, SPACING, NAMES))["PZ"]
    masd, hd95 = _reference_distances(pred == 1, ref == 1, SPACING)
    assert row["masd_mm"] == pytest.approx(masd, rel=1e-4)
    assert row["hd95_mm"] == pytest.approx(hd95, rel=1e-4)
    inter = np.logical_and(pred == 1, ref == 1).sum()
    assert row["dice"] == pytest.approx(2 * inter / ((pred == 1).sum() + (ref == 1).sum()), rel=1e-6)


def test_empty_masks_are_reported_not_dropped_or_perfect():
    ref = np.zeros((12, 12, 6), dtype=np.uint8)
    ref[2:5, 2:5, 1:3] = 1  # PZ only in reference
    ref[6:9, 6:9, 1:3] = 2  # TZ in both
    pred = np.zeros_like(ref)
    pred[6:9, 6:9, 1:3] = 2
    pred[2:4, 8:10, 3:5] = 4  # AFS only in prediction
    rows = _by_zone(zone_metrics(pred, ref, SPACING, NAMES))
    assert rows["PZ"]["status"] == "pred_empty" and rows["PZ"]["dice"] == 0.0
    assert math.isnan(rows["PZ"]["masd_mm"]) and math.isnan(rows["PZ"]["hd95_mm"])
    assert rows["AFS"]["status"] == "ref_empty" and rows["AFS"]["dice"] == 0.0
    assert rows["DPU"]["status"] == "both_empty" and math.isnan(rows["DPU"]["dice"])
    assert rows["TZ"]["status"] == "ok" and rows["TZ"]["dice"] == 1.0 and rows["TZ"]["masd_mm"] == 0.0

    # a second case where PZ is perfect: the summary keeps the empty case as 0
    summary = summarize_zone_metrics(
        zone_metrics(pred, ref, SPACING, NAMES) + zone_metrics(ref, ref, SPACING, NAMES)
    )
    assert summary["PZ"]["n_pred_empty"] == 1 and summary["PZ"]["n_dice"] == 2
    assert summary["PZ"]["dice_mean"] == pytest.approx(0.5)
    assert summary["PZ"]["n_distance"] == 1 and summary["PZ"]["masd_mm_mean"] == 0.0
    assert summary["DPU"]["n_both_empty"] == 2 and summary["DPU"]["dice_mean"] is None
    assert summary["AFS"]["n_ref_empty"] == 1 and summary["AFS"]["n_both_empty"] == 1


def test_shape_mismatch_is_a_medcl_error():
    with pytest.raises(MedclError, match="shape"):
        zone_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), SPACING, NAMES)
