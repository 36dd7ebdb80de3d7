"""``segment`` on phantoms: exact round trip to the input grid, TTA, outputs, bad inputs, CLI."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medcl.errors import MedclError
from medcl.pipelines.zones_segment import ZonesSegmenter, segment

torch.set_num_threads(2)
LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # scaled intensities: bg, PZ, TZ, DPU, AFS, bright bg
RAS_TO_INPUT = np.array([[2, -1], [0, 1], [1, -1]])  # the phantom is stored permuted and flipped


class IntensityOracle(nn.Module):
    """Stand-in zones network: the zone whose intensity level is nearest to the voxel's."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(LEVELS).view(1, -1, 1, 1, 1))

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = -(((x - self.levels) * 20.0) ** 2)
        logits = torch.cat([torch.logsumexp(logits[:, [0, 5]], 1, keepdim=True), logits[:, 1:5]], 1)
        probs = logits.softmax(1)
        return probs, 1.0 - probs.amax(1, keepdim=True)


def phantom_ras(shape=(200, 200, 12)) -> tuple[np.ndarray, np.ndarray]:
    """Zone labels and T2-like intensities on a RAS grid (x = left, y = anterior, z = superior)."""
    labels = np.zeros(shape, dtype=np.uint8)
    cx, cy = shape[0] // 2, shape[1] // 2
    labels[cx - 30 : cx + 30, cy - 30 : cy, 2:10] = 1  # PZ, posterior
    labels[cx - 20 : cx + 20, cy : cy + 25, 2:10] = 2  # TZ
    labels[cx - 5 : cx + 5, cy + 5 : cy + 12, 3:9] = 3  # DPU inside TZ
    labels[cx - 15 : cx + 15, cy + 25 : cy + 32, 2:10] = 4  # AFS, anterior
    image = np.asarray(LEVELS)[labels] * 1000.0
    image[:15] = 1000.0  # bright tissue outside the ROI fixes the 99th percentile
    return labels, image.astype(np.float32)


def write_phantom(path, spacing=(0.5, 0.5, 3.0)) -> tuple[np.ndarray, np.ndarray]:
    """Write the phantom in a non-RAS voxel order; return its labels and affine on that grid."""
    labels, image = phantom_ras()
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = (-40.0, 12.5, -7.0)
    affine = ras_affine @ nib.orientations.inv_ornt_aff(RAS_TO_INPUT, labels.shape)
    stored = nib.orientations.apply_orientation(image, RAS_TO_INPUT)
    nib.save(nib.Nifti1Image(stored, affine), str(path))
    return nib.orientations.apply_orientation(labels, RAS_TO_INPUT), affine


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    (root / "in").mkdir()
    labels, affine = write_phantom(root / "in" / "case1.nii.gz")
    rows = segment([root / "in" / "case1.nii.gz"], ZonesSegmenter(net=IntensityOracle()), root / "out")
    return root, labels, affine, rows


def test_labels_round_trip_exactly_onto_the_input_grid(phantom_run):
    root, labels, affine, rows = phantom_run
    assert rows[0]["status"] == "ok", rows[0]["error"]
    out = nib.load(root / "out" / "case1_zones.nii.gz")
    assert out.shape == labels.shape and np.allclose(out.affine, affine, atol=1e-5)
    assert out.get_data_dtype() == np.uint8
    assert (np.asarray(out.dataobj) == labels).all()
    unc = nib.load(root / "out" / "case1_uncertainty.nii.gz")
    assert unc.shape == labels.shape and np.allclose(unc.affine, affine, atol=1e-5)


def test_volumes_sectors_qc_and_summary(phantom_run):
    root, labels, affine, rows = phantom_run
    vol = json.loads((root / "out" / "case1_volumes.json").read_text())
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    for value, zone in enumerate(("PZ", "TZ", "DPU", "AFS"), start=1):
        assert vol["zones"][zone] == pytest.approx((labels == value).sum() * voxel_ml)
        assert rows[0][f"{zone}_ml"] == pytest.approx(vol["zones"][zone], abs=1e-4)
    sectors = np.asarray(nib.load(root / "out" / "case1_sectors.nii.gz").dataobj)
    assert ((sectors > 0) == (labels > 0)).all()
    lut = json.loads((root / "out" / "case1_sectors.json").read_text())
    assert lut["centre_from"] == "DPU" and len(lut["sectors"]) == 39
    png = (root / "out" / "case1_qc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with open(root / "out" / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert [r["case"] for r in summary] == ["case1"] and summary[0]["status"] == "ok"


def test_other_spacing_still_segments_well(tmp_path):
    (tmp_path / "in").mkdir()
    labels, _ = write_phantom(tmp_path / "in" / "aniso.nii.gz", spacing=(0.7, 0.7, 2.5))
    rows = segment(
        [tmp_path / "in" / "aniso.nii.gz"], ZonesSegmenter(net=IntensityOracle(), tta=False), tmp_path / "o"
    )
    assert rows[0]["status"] == "ok", rows[0]["error"]
    pred = np.asarray(nib.load(tmp_path / "o" / "aniso_zones.nii.gz").dataobj)
    for zone in (1, 2, 3, 4):
        dice = 2 * ((pred == zone) & (labels == zone)).sum() / ((pred == zone).sum() + (labels == zone).sum())
        assert dice > 0.85, (zone, dice)


class _Asymmetric(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(1, 6, 3, padding=1)

    def zone_probabilities(self, x):
        out = self.conv(x)
        return out[:, :5].softmax(1), out[:, 5:].sigmoid()


def test_flip_tta_averages_the_unflipped_mirror_prediction():
    net = _Asymmetric().eval()
    seg = ZonesSegmenter(net=net, tta=True)
    x = torch.rand(1, 1, 32, 32, 16)
    with torch.no_grad():
        direct = torch.cat(net.zone_probabilities(x), 1)
        mirror = torch.cat(net.zone_probabilities(x.flip(2)), 1).flip(2)
    assert torch.allclose(seg.infer(x), 0.5 * (direct + mirror), atol=1e-5)
    seg.tta = False
    assert torch.allclose(seg.infer(x), direct, atol=1e-5)
    assert not torch.allclose(direct, mirror, atol=1e-3)  # the check is not vacuous


def _bad_inputs(folder):
    nib.save(nib.Nifti1Image(np.zeros((20, 20), np.float32), np.eye(4)), str(folder / "flat2d.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 1), np.float32), np.eye(4)), str(folder / "oneslice.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 10, 3), np.float32), np.eye(4)), str(folder / "fourd.nii.gz"))
    nan = np.ones((20, 20, 10), np.float32)
    nan[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(folder / "nan.nii.gz"))
    (folder / "garbage.nii.gz").write_bytes(b"this is not an image")
    return ["flat2d", "oneslice", "fourd", "nan", "garbage"]


def test_bad_inputs_are_reported_and_the_batch_finishes(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    bad = _bad_inputs(tmp_path / "in")
    labels, _ = write_phantom(tmp_path / "in" / "good.nii.gz")
    inputs = [tmp_path / "in" / f"{n}.nii.gz" for n in bad[:3]] + [tmp_path / "in" / "good.nii.gz"]
    inputs += [tmp_path / "in" / f"{n}.nii.gz" for n in bad[3:]] + [tmp_path / "in" / "missing.nii.gz"]
    rows = segment(inputs, ZonesSegmenter(net=IntensityOracle(), tta=False), tmp_path / "out")
    status = {r["case"]: r for r in rows}
    assert status["good"]["status"] == "ok"
    assert (np.asarray(nib.load(tmp_path / "out" / "good_zones.nii.gz").dataobj) == labels).all()
    expected = {
        "flat2d": "2 dimensions",
        "oneslice": "single slice",
        "fourd": "is 4D with 3 channels",
        "nan": "NaN",
        "garbage": "not a readable image",
        "missing": "no such file",
    }
    for name, words in expected.items():
        assert status[name]["status"] == "error" and words in status[name]["error"], status[name]
        assert name in status[name]["error"]  # the message names the file
        assert not list((tmp_path / "out").glob(f"{name}_*"))
    err = capsys.readouterr().err
    assert err.count("medcl: error:") == 6
    with open(tmp_path / "out" / "summary.csv") as handle:
        assert sum(r["status"] == "error" for r in csv.DictReader(handle)) == 6


def test_output_folder_equal_to_input_folder_is_refused(tmp_path):
    write_phantom(tmp_path / "scan.nii.gz")
    with pytest.raises(MedclError, match="input folder"):
        segment([tmp_path / "scan.nii.gz"], ZonesSegmenter(net=IntensityOracle()), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.nii.gz"]



def test_cli_segment_exit_codes(tmp_path, capsys, random_zones_checkpoint):
    from medcl.cli import main

    (tmp_path / "in").mkdir()
    write_phantom(tmp_path / "in" / "good.nii.gz")
    (tmp_path / "in" / "bad.nii.gz").write_bytes(b"junk")
    ckpt = random_zones_checkpoint(tmp_path / "tiny.ckpt", "dualpath")
    args = [
        "zones",
        "segment",
        str(tmp_path / "in" / "good.nii.gz"),
        str(tmp_path / "in" / "bad.nii.gz"),
        "--checkpoint",
        str(ckpt),
        "--no-tta",
        "--device",
        "cpu",
    ]
    assert main([*args, "--out", str(tmp_path / "out")]) == 1
    good = nib.load(tmp_path / "out" / "good_zones.nii.gz")
    assert good.shape == nib.load(tmp_path / "in" / "good.nii.gz").shape
    assert main([*args, "--out", str(tmp_path / "in")]) == 2
    assert "output folder is the input folder" in capsys.readouterr().err
