"""``medcl bench zones-real``: scoring rules, the inter-reader ceiling on real labels, the clean skip."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medcl.pipelines.bench.zones_real import case_scores, inter_reader


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_case_scores_count_dpu_as_tz_and_afs_as_background():
    ref = np.zeros((12, 12, 4), np.int64)
    ref[2:6, 2:8, 1:3] = 1  # PZ: 48 voxels
    ref[6:10, 2:8, 1:3] = 2  # TZ: 48 voxels
    pred = ref.copy()
    pred[6:8, 2:8, 1:3] = 3  # 24 TZ voxels predicted as DPU: still TZ
    pred[2:4, 2:8, 1:3] = 0  # 24 PZ voxels missed
    pred[10:12, 2:8, 1:3] = 4  # AFS outside the reference: background, not gland
    scores = case_scores(pred, ref, (1.0, 1.0, 1.0))
    assert scores["TZ"]["dice"] == pytest.approx(1.0)
    assert scores["PZ"]["dice"] == pytest.approx(2 * 24 / (24 + 48), abs=1e-4)
    assert scores["gland"]["dice"] == pytest.approx(2 * 72 / (72 + 96), abs=1e-4)
    assert scores["TZ"]["hd95_mm"] == pytest.approx(0.0)


def test_inter_reader_ceiling_on_the_real_prostate158_labels(shared_data):
    root = shared_data / "mri" / "prostate158-sample"
    result = inter_reader(root)
    assert sorted(result["cases"]) == ["001", "002"]  # 020 has one reader
    for case, scores in result["cases"].items():
        r1 = np.asarray(nib.load(root / case / "t2_anatomy_reader1.nii.gz").dataobj)
        r2 = np.asarray(nib.load(root / case / "t2_anatomy_reader2.nii.gz").dataobj)
        assert scores["gland"]["dice"] == pytest.approx(_dice(r1 > 0, r2 > 0), abs=1e-4)
        assert scores["PZ"]["dice"] == pytest.approx(_dice(r1 == 2, r2 == 2), abs=1e-4)  # Prostate158 2 = PZ
        assert scores["TZ"]["dice"] == pytest.approx(_dice(r1 == 1, r2 == 1), abs=1e-4)
    assert 0.5 < result["mean"]["gland"]["dice"] < 1.0


def test_cli_skips_cleanly_without_the_shared_data(tmp_path, capsys):
    from medcl.cli import main

    assert main(["bench", "zones-real", "--quick", "--data", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "zones_real.json").read_text())
    assert "no Prostate158 cases" in result["skipped"]
    assert "skipped" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def test_tiny_run_writes_scored_folds_and_a_segment_ready_checkpoint_of_the_real_cases(shared_data, tmp_path):
    """One fold, one optimiser step: the outputs and their bookkeeping, not the accuracy."""
    from medcl.cli import main
    from medcl.engine import load_model_checkpoint
    from medcl.pipelines.zones_segment import ZonesSegmenter

    root = shared_data / "mri" / "prostate158-sample"
    out = tmp_path / "bench"
    args = ["bench", "zones-real", "--quick", "--data", str(root), "--out", str(out), "--steps", "1", "--folds", "1",
            "--variants", "dualpath"]
    assert main(args) == 0
    result = json.loads((out / "zones_real.json").read_text())
    assert result["cases"] == ["001", "002", "020"] and result["steps"]["dualpath"] == 1
    assert result["recipe"] == "configs/zones/fewshot.yaml"  # portable: no absolute path of this machine
    (fold,) = result["variants"]["dualpath"]["folds"]
    assert fold["test_case"] == "001" and fold["train_cases"] == ["002", "020"]  # leave-one-case-out
    for zone in ("PZ", "TZ", "gland"):
        assert 0.0 <= fold[zone]["dice"] <= 1.0
        assert result["variants"]["dualpath"]["mean"][zone]["dice"] == fold[zone]["dice"]  # mean of one fold
    assert (out / "qc" / "dualpath_001_qc.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = load_model_checkpoint(out / "checkpoints" / "zones_real.ckpt", "zones")
    card = ckpt.extra["model_card"]
    assert card["n_training_cases"] == 3 and card["training_data"][0]["cases"] == 3  # each real case once
    assert not card["synthetic_only"] and ckpt.config["data"]["pixdim"] == [1.0, 1.0, 3.0]
    segmenter = ZonesSegmenter.from_checkpoint(out / "checkpoints" / "zones_real.ckpt", device="cpu")
    assert segmenter.drop_zones == (3, 4)  # PZ/TZ-only training: DPU and AFS are folded into their hosts
