"""Post-processing: largest components, signed-distance gap filling, volumes (synthetic + real MSD)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medcl.postprocess.components import gland_mask, keep_largest_per_zone
from medcl.postprocess.gapfill import fill_gaps, signed_distance
from medcl.postprocess.volumes import voxel_volume_ml, zone_volumes
from medcl.postprocess.zones import clean_zones

SPACING = (0.5, 0.5, 3.0)


def _two_zone_map():
    labels = np.zeros((20, 20, 8), dtype=np.uint8)
    labels[2:8, 2:8, 1:5] = 1  # PZ main component (144 voxels)
    labels[15:17, 15:17, 6:7] = 1  # PZ fragment (4 voxels)
    labels[8:14, 2:8, 1:5] = 2  # TZ touching PZ
    return labels


def test_keep_largest_per_zone_drops_fragments_only():
    labels = _two_zone_map()
    out = keep_largest_per_zone(labels)
    assert out.dtype == labels.dtype
    assert (out == 1).sum() == 144 and (out[15:17, 15:17, 6] == 0).all()
    assert ((out == 2) == (labels == 2)).all()


def test_gland_mask_is_largest_component_with_holes_filled():
    labels = _two_zone_map()
    labels[4, 4, 2] = 0  # an enclosed hole
    gland = gland_mask(labels)
    assert gland[4, 4, 2] and not gland[15, 15, 6]
    assert gland.sum() == 144 + 144


def test_signed_distance_is_physical_and_signed():
    mask = np.zeros((9, 9, 9), bool)
    mask[4, 4, 4] = True
    sd = signed_distance(mask, SPACING)
    assert sd[4, 4, 5] == pytest.approx(3.0) and sd[5, 4, 4] == pytest.approx(0.5)
    assert sd[4, 4, 4] < 0
    assert np.isinf(signed_distance(np.zeros((3, 3, 3), bool), SPACING)).all()


def test_fill_gaps_matches_per_zone_signed_distance_argmin():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=(16, 16, 6)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.6] = 0  # many gaps
    gland = np.zeros(labels.shape, bool)
    gland[2:14, 1:15, 1:5] = True
    out = fill_gaps(labels, gland, SPACING)
    inside = np.where(gland, labels, 0)
    sdm = np.stack([signed_distance(inside == z, SPACING) for z in (1, 2, 3, 4)])
    gaps = gland & (inside == 0)
    chosen = np.take_along_axis(sdm[:, gaps], (out[gaps].astype(int) - 1)[None], 0)[0]
    assert np.allclose(chosen, sdm[:, gaps].min(0))  # tie-tolerant: chosen zone is a nearest one
    assert ((out > 0) == gland).all()
    assert (out[gland & (inside > 0)] == inside[gland & (inside > 0)]).all()


def test_clean_zones_gives_disjoint_connected_zones_that_fill_the_gland():
    labels = _two_zone_map()
    labels[3:7, 3:7, 2] = 0  # a gap inside PZ
    labels[9:12, 3:6, 1:5] = 3  # DPU inside TZ
    labels[3, 3, 3] = 2  # a stray TZ voxel inside PZ
    out = clean_zones(labels, SPACING)
    assert out.dtype == np.uint8
    gland = ndimage.binary_fill_holes(np.isin(labels, (1, 2, 3, 4)) & (ndimage.label(labels > 0)[0] == 1))
    assert ((out > 0) == gland).all()
    for zone in (1, 2, 3):
        assert ndimage.label(out == zone)[1] == 1
    assert out[3, 3, 3] == 1 and (out[3:7, 3:7, 2] == 1).all()


def test_zone_volumes_hand_computed():
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[0, :, :] = 1  # 16 voxels
    labels[1, :2, :] = 2  # 8
    labels[3, 0, 0] = 4  # 1
    affine = np.diag([0.5, -0.5, 3.0, 1.0])
    vol = zone_volumes(labels, affine)
    assert voxel_volume_ml(affine) == pytest.approx(0.75e-3)
    assert vol["zones"] == pytest.approx({"PZ": 16 * 0.75e-3, "TZ": 8 * 0.75e-3, "DPU": 0.0, "AFS": 0.75e-3})
    assert vol["gland"] == pytest.approx(25 * 0.75e-3)
    json.dumps(vol)


@pytest.mark.parametrize("name", ["prostate_00.nii", "prostate_01.nii"])
def test_volumes_of_real_msd_labels_match_nibabel_header(shared_data, name):
    nii = nib.load(shared_data / "mri" / "msd-prostate-labels" / name)
    labels = np.asarray(nii.dataobj).astype(np.uint8)
    vol = zone_volumes(labels, nii.affine)
    voxel_ml = float(np.prod(nii.header.get_zooms()[:3])) / 1000.0
    for value, zone in ((1, "PZ"), (2, "TZ")):
        assert vol["zones"][zone] == pytest.approx(np.count_nonzero(labels == value) * voxel_ml, rel=1e-5)
    assert vol["gland"] == pytest.approx(np.count_nonzero(labels) * voxel_ml, rel=1e-5)
    assert 5.0 < vol["gland"] < 200.0  # a plausible prostate
