"""Viewer outputs of ``segment`` read back as viewers do: Slicer .seg.nrrd (slicerio, SimpleITK),
ITK-SNAP label descriptions, float16 probabilities; ``--continue``; the fold ensemble."""

from __future__ import annotations

import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_zones_segment import IntensityOracle, write_phantom

from medcl.errors import MedclError
from medcl.pipelines.zones_segment import ZonesSegmenter, segment

NAMES = ["PZ", "TZ", "DPU", "AFS"]
HEX = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8"]  # the documented zone colours


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    (root / "in").mkdir()
    labels, affine = write_phantom(root / "in" / "case1.nii.gz")
    rows = segment([root / "in" / "case1.nii.gz"], ZonesSegmenter(net=IntensityOracle(), tta=False), root / "out",
                   save_probabilities=True)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    return root, labels, affine


def test_slicer_seg_nrrd_has_named_coloured_segments_on_the_input_grid(run):
    import slicerio

    root, labels, affine = run
    seg = slicerio.read_segmentation(str(root / "out" / "case1_zones.seg.nrrd"))
    assert [s["name"] for s in seg["segments"]] == NAMES
    assert [s["labelValue"] for s in seg["segments"]] == [1, 2, 3, 4]
    for segment_, hexa in zip(seg["segments"], HEX):
        assert np.allclose(segment_["color"], [int(hexa[i : i + 2], 16) / 255 for i in (1, 3, 5)], atol=1e-5)
        assert (slicerio.segment_mask(seg, segment_) == (labels == segment_["labelValue"])).all()
    assert (seg["voxels"] == labels).all()
    assert np.allclose(seg["ijkToLPS"], np.diag([-1, -1, 1, 1]) @ affine, atol=1e-5)
    # the same physical grid as the NIfTI label map, both read by SimpleITK
    nrrd, nifti = (sitk.ReadImage(str(root / "out" / f"case1_zones{s}")) for s in (".seg.nrrd", ".nii.gz"))
    assert np.allclose(nrrd.GetOrigin(), nifti.GetOrigin(), atol=1e-4)
    assert np.allclose(nrrd.GetDirection(), nifti.GetDirection(), atol=1e-5)
    assert np.allclose(nrrd.GetSpacing(), nifti.GetSpacing(), atol=1e-5)
    assert (sitk.GetArrayFromImage(nrrd) == sitk.GetArrayFromImage(nifti)).all()


def test_itksnap_label_description_matches_the_zones(run):
    root, _, _ = run
    rows = [re.match(r'\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d)\s+(\d)\s+"(.*)"', line)
            for line in (root / "out" / "zones_itksnap_labels.txt").read_text().splitlines() if not line.startswith("#")]
    assert all(rows)
    assert [(int(r[1]), r[8]) for r in rows] == [(0, "Clear Label"), *zip(range(1, 5), NAMES)]
    for r, hexa in zip(rows[1:], HEX):
        assert [int(r[i]) for i in (2, 3, 4)] == [int(hexa[i : i + 2], 16) for i in (1, 3, 5)]
        assert float(r[5]) == 1 and r[6] == "1"


def test_probabilities_are_float16_on_the_input_grid(run):
    root, labels, affine = run
    saved = np.load(root / "out" / "case1_probabilities.npz")
    assert saved["probabilities"].dtype == np.float16 and list(saved["channels"]) == ["BG", *NAMES]
    assert saved["probabilities"].shape == (5, *labels.shape)
    assert np.allclose(saved["affine"], nib.load(root / "out" / "case1_zones.nii.gz").affine, atol=1e-5)
    assert np.allclose(saved["affine"], affine, atol=1e-5)
    probs = saved["probabilities"].astype(np.float32)
    assert np.allclose(probs.sum(0), 1.0, atol=5e-3)
    assert (probs.argmax(0) == labels).mean() > 0.999


def test_continue_skips_finished_cases_and_redoes_incomplete_ones(run, tmp_path):
    root, _, _ = run
    write_phantom(root / "in" / "case2.nii.gz")
    inputs = [root / "in" / "case1.nii.gz", root / "in" / "case2.nii.gz"]
    before = {p.name: p.stat().st_mtime_ns for p in (root / "out").glob("case1_*")}
    seg = ZonesSegmenter(net=IntensityOracle(), tta=False)
    rows = segment(inputs, seg, root / "out", save_probabilities=True, resume=True)
    assert [(r["case"], r["resumed"]) for r in rows] == [("case1", True), ("case2", False)]
    assert {p.name: p.stat().st_mtime_ns for p in (root / "out").glob("case1_*")} == before
    vol = json.loads((root / "out" / "case1_volumes.json").read_text())
    assert rows[0]["gland_ml"] == pytest.approx(vol["gland"], abs=1e-4) and rows[0]["status"] == "ok"
    with open(root / "out" / "summary.csv") as handle:
        assert [r["case"] for r in csv.DictReader(handle)] == ["case1", "case2"]
    (root / "out" / "case2_qc.png").unlink()  # an interrupted case
    rows = segment(inputs, seg, root / "out", save_probabilities=True, resume=True)
    assert [r["resumed"] for r in rows] == [True, False] and (root / "out" / "case2_qc.png").is_file()


def test_fold_ensemble_averages_the_members(tmp_path, random_zones_checkpoint):
    a = random_zones_checkpoint(tmp_path / "a.ckpt", "baseline")
    b = random_zones_checkpoint(tmp_path / "b.ckpt", "dualpath")
    x = torch.rand(1, 1, 32, 32, 16)
    members = [ZonesSegmenter.from_checkpoint(p, device="cpu", tta=False).infer(x) for p in (a, b)]
    ensemble = ZonesSegmenter.from_checkpoint([a, b], device="cpu", tta=False)
    assert torch.allclose(ensemble.infer(x), 0.5 * (members[0] + members[1]), atol=1e-5)
    assert not torch.allclose(members[0], members[1], atol=1e-3)  # the average is not trivially one member
    assert ensemble.card["ensemble_of"] == [str(a), str(b)]


def test_ensemble_of_different_label_maps_is_refused(tmp_path, random_zones_checkpoint):
    a = random_zones_checkpoint(tmp_path / "a.ckpt", "baseline")
    payload = torch.load(a, weights_only=False)
    payload["medcl"]["label_map"] = {"PZ": 1, "TZ": 2, "CZ": 3, "AFS": 4}
    torch.save(payload, tmp_path / "other.ckpt")
    with pytest.raises(MedclError, match="other.ckpt: labels"):
        ZonesSegmenter.from_checkpoint([a, tmp_path / "other.ckpt"], device="cpu")


def test_cli_ensemble_continue_and_probabilities(tmp_path, random_zones_checkpoint):
    from medcl.cli import main

    (tmp_path / "in").mkdir()
    write_phantom(tmp_path / "in" / "p.nii.gz")
    ckpts = [str(random_zones_checkpoint(tmp_path / f"{n}.ckpt", n)) for n in ("baseline", "dualpath")]
    args = ["zones", "segment", str(tmp_path / "in" / "p.nii.gz"), "--checkpoint", *ckpts, "--no-tta",
            "--device", "cpu", "--roi", "center", "--roi-mm", "40", "40", "30", "--save-probabilities",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    assert np.load(tmp_path / "out" / "p_probabilities.npz")["probabilities"].shape[0] == 5
    assert main([*args, "--continue"]) == 0
    with open(tmp_path / "out" / "summary.csv") as handle:
        assert next(csv.DictReader(handle))["resumed"] == "True"


def test_zones_never_annotated_in_training_fold_into_background():
    from medcl.pipelines.zones_segment import never_annotated

    names = dict(zip(range(1, 5), NAMES))
    card = {"training_data": [{"name": "p158", "annotated": ["PZ", "TZ"]},
                              {"name": "p158 (unlabeled)", "annotated": ["PZ", "TZ", "DPU", "AFS"]}]}
    assert never_annotated(card, names) == (3, 4)
    assert never_annotated({}, names) == ()  # no card: nothing is dropped
    x = torch.tensor([0.0, 0.2, 0.4, 0.6, 0.8]).view(1, 1, 5, 1, 1).repeat(1, 1, 1, 16, 16)
    full = ZonesSegmenter(net=IntensityOracle(), tta=False).infer(x)
    dropped = ZonesSegmenter(net=IntensityOracle(), tta=False, drop_zones=(3, 4)).infer(x)
    assert torch.allclose(dropped[:, 0], full[:, 0] + full[:, 3] + full[:, 4], atol=1e-6)
    assert (dropped[:, 3:5] == 0).all() and torch.allclose(dropped[:, 1:3], full[:, 1:3])
    assert full[0, 4, 4].mean() > 0.9  # the AFS-level voxels were AFS before
