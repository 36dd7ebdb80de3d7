"""Automatic region of interest: the zones follow a real prostate scan shifted far off-centre.

The scan is real Prostate158 case 001 (T2); its reader-1 PZ/TZ voxels are painted with two flat
intensities so a stand-in network (flat patch at a level -> zone) recognises them wherever they
are. The shifted copy is padded/cropped with its origin changed, so the same tissue keeps its
world coordinates: the zones found with ``roi="auto"`` must be the same in world coordinates.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medcl.inferers.zones_roi import RoiBox, box_around, quality_flags
from medcl.pipelines.zones_segment import ZonesSegmenter, segment

CASE = "mri/prostate158-sample/001"
LEVELS = {1: 0.3, 2: 0.7}  # medcl PZ, TZ -> scaled intensity of the painted gland
PAD = 300  # voxels added before axis 0 and after axis 1: ~70 mm off-centre in both axes


class FlatPatchOracle(nn.Module):
    """Stand-in zones network: a voxel is a zone where its 3 x 3 neighbourhood is flat at the zone's level."""

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = F.avg_pool3d(x, (3, 3, 1), stride=1, padding=(1, 1, 0), count_include_pad=False)
        var = F.avg_pool3d(x * x, (3, 3, 1), stride=1, padding=(1, 1, 0), count_include_pad=False) - mean**2
        flat = (var < 1e-4).float()
        zones = [flat * torch.exp(-(((x - LEVELS[z]) / 0.08) ** 2)) for z in (1, 2)]
        zeros = torch.zeros_like(x)
        probs = torch.cat([(1 - zones[0] - zones[1]).clamp_min(0), *zones, zeros, zeros], 1)
        return probs, 1.0 - probs.amax(1, keepdim=True)


def _painted(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image`` with each zone set to its level of the image's 1st-99th percentile range."""
    lo, hi = np.percentile(image, (1, 99))
    out = image.astype(np.float32).copy()
    for zone, level in LEVELS.items():
        out[labels == zone] = lo + level * (hi - lo)
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def shifted_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("roi")
    t2 = nib.load(shared_data / CASE / "t2.nii.gz")
    ref = np.asarray(nib.load(shared_data / CASE / "t2_anatomy_reader1.nii.gz").dataobj).astype(np.uint8)
    ref = np.select([ref == 1, ref == 2], [2, 1], 0).astype(np.uint8)  # Prostate158 1 TZ, 2 PZ -> medcl 1 PZ, 2 TZ
    image = np.asarray(t2.dataobj, dtype=np.float32)
    (root / "in").mkdir()
    nib.save(nib.Nifti1Image(_painted(image, ref), t2.affine), root / "in" / "centred.nii.gz")
    shifted = np.pad(image, ((PAD, 0), (0, PAD), (0, 0)))
    ref_shifted = np.pad(ref, ((PAD, 0), (0, PAD), (0, 0)))
    move = np.eye(4)
    move[:3, 3] = (-PAD, 0, 0)  # shifted voxel b holds original voxel b - (PAD, 0, 0): same world point
    nib.save(nib.Nifti1Image(_painted(shifted, ref_shifted), t2.affine @ move), root / "in" / "shifted.nii.gz")
    cut = _painted(image, ref)[int(np.argwhere(ref > 0)[:, 0].mean()):]  # the image ends inside the gland
    move[:3, 3] = (int(np.argwhere(ref > 0)[:, 0].mean()), 0, 0)
    nib.save(nib.Nifti1Image(cut, t2.affine @ move), root / "in" / "cut.nii.gz")
    inputs = [root / "in" / f"{n}.nii.gz" for n in ("centred", "shifted", "cut")]
    auto = segment(inputs, ZonesSegmenter(net=FlatPatchOracle(), tta=False), root / "auto")
    center = segment(inputs[:2], ZonesSegmenter(net=FlatPatchOracle(), tta=False, roi="center"), root / "center")
    return root, ref, {r["case"]: r for r in auto}, {r["case"]: r for r in center}


def _zones(folder, case) -> np.ndarray:
    return np.asarray(nib.load(folder / f"{case}_zones.nii.gz").dataobj)


def test_auto_roi_zones_follow_the_gland_off_centre(shifted_run):
    root, ref, auto, _ = shifted_run
    assert auto["centred"]["status"] == "ok" and auto["shifted"]["status"] == "ok", auto
    centred = _zones(root / "auto", "centred")
    shifted = _zones(root / "auto", "shifted")[PAD:, : ref.shape[1]]  # back on the original voxels
    for zone in (1, 2):
        assert _dice(centred == zone, ref == zone) > 0.7, zone  # the flat-patch oracle erodes thin PZ edges
        assert _dice(shifted == zone, centred == zone) > 0.97, zone
    assert (_zones(root / "auto", "shifted")[:PAD] == 0).all()
    centre_a = np.array(auto["centred"]["roi_center_mm_ras"].split(), float)
    centre_b = np.array(auto["shifted"]["roi_center_mm_ras"].split(), float)
    assert np.abs(centre_a - centre_b).max() < 2.0  # the same world point, within a coarse voxel
    assert auto["shifted"]["roi"] == "auto" and auto["shifted"]["flags"] == ""


def test_centred_box_misses_the_off_centre_gland_and_says_so(shifted_run):
    root, ref, auto, center = shifted_run
    shifted = _zones(root / "center", "shifted")[PAD:, : ref.shape[1]]
    assert _dice(shifted > 0, ref > 0) < 0.2
    assert "implausible gland volume" in center["shifted"]["flags"] or "no gland" in center["shifted"]["flags"]
    with open(root / "center" / "summary.csv") as handle:
        rows = {r["case"]: r for r in csv.DictReader(handle)}
    assert rows["shifted"]["roi"] == "center" and rows["shifted"]["flags"]


def test_gland_cut_by_the_image_border_is_flagged(shifted_run):
    root, _, auto, _ = shifted_run
    assert auto["cut"]["status"] == "ok"
    assert "gland touches image border (R)" in auto["cut"]["flags"]
    vol = json.loads((root / "auto" / "cut_volumes.json").read_text())
    assert vol["flags"] == auto["cut"]["flags"].split("; ") and vol["roi"]["mode"] == "auto"


def test_quality_flags_hand_made_cases():
    gland = np.zeros((20, 20, 10), bool)
    gland[5:10, 5:10, 2:8] = True
    inner = RoiBox([5, 0, 0], [15, 20, 10], [20, 20, 10], "auto")
    assert quality_flags(gland, inner, 30.0) == ["gland touches crop border (R)"]
    whole = RoiBox([0, 0, 0], [20, 20, 10], [20, 20, 10], "auto")
    assert quality_flags(gland, whole, 30.0) == []
    assert quality_flags(gland, whole, 400.0) == ["implausible gland volume 400.0 ml (expected 5-300)"]
    gland[:, :, 0] = True
    assert quality_flags(gland, whole, 30.0) == ["gland touches image border (RAS)"]
    assert quality_flags(np.zeros_like(gland), whole, 0.0) == ["no gland found"]


def test_auto_box_is_at_least_and_at_most_its_bounds():
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    small = box_around(np.array([[40.0, 40.0, 30.0], [50.0, 50.0, 36.0]]), affine, (400, 400, 40), (80, 80, 60), 10.0)
    assert np.allclose(np.subtract(small.end, small.start) * [0.5, 0.5, 3.0], (80.5, 80.5, 63.0), atol=1.5)
    assert np.allclose(small.center_mm, (45.0, 45.0, 33.0))
    huge = box_around(np.array([[0.0, 0.0, 0.0], [199.0, 199.0, 119.0]]), affine, (400, 400, 40), (80, 80, 60), 10.0)
    assert np.allclose(np.subtract(huge.end, huge.start) * [0.5, 0.5, 3.0], (120.5, 120.5, 93.0), atol=1.5)
