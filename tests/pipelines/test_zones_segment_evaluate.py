"""``evaluate``: per-zone/per-case CSVs and summary JSON, empty masks and missing predictions counted."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from medcl.errors import MedclError
from medcl.pipelines.zones_segment import evaluate

AFFINE = np.diag([0.5, 0.5, 3.0, 1.0])


def _save(path, labels):
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), AFFINE), str(path))


def _reference():
    ref = np.zeros((24, 24, 8), dtype=np.uint8)
    ref[4:12, 4:20, 2:6] = 1
    ref[12:20, 4:20, 2:6] = 2
    ref[14:16, 10:12, 2:6] = 3
    return ref


def test_evaluate_writes_tables_and_counts_every_case(tmp_path):
    refs, preds = tmp_path / "ref", tmp_path / "pred"
    refs.mkdir(), preds.mkdir()
    ref = _reference()
    _save(refs / "perfect.nii.gz", ref)
    _save(preds / "perfect_zones.nii.gz", ref)
    shifted = np.zeros_like(ref)
    shifted[:, :, 3:] = ref[:, :, :-3]  # one slice shift = 3 mm, DPU removed
    shifted[shifted == 3] = 2
    _save(refs / "shifted.nii.gz", ref)
    _save(preds / "shifted_zones.nii.gz", shifted)
    _save(refs / "missing.nii.gz", ref)
    summary = evaluate(preds, refs, tmp_path / "eval")

    assert summary["n_cases"] == 3 and summary["n_failed"] == 1 and "missing" in summary["errors"]
    pz = summary["zones"]["PZ"]
    assert pz["n_dice"] == 2 and pz["n_ok"] == 2
    assert pz["dice_mean"] == pytest.approx((1.0 + 2 * 1 / (4 + 3)) / 2)  # ref slices 2-5, pred 5-7
    dpu = summary["zones"]["DPU"]
    assert dpu["n_pred_empty"] == 1 and dpu["dice_mean"] == pytest.approx(0.5)  # 1.0 and an explicit 0
    assert dpu["n_distance"] == 1 and dpu["masd_mm_mean"] == 0.0
    assert summary["zones"]["AFS"]["n_both_empty"] == 2 and summary["zones"]["AFS"]["dice_mean"] is None

    with open(tmp_path / "eval" / "per_zone.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["case"] for r in rows} == {"perfect", "shifted"}
    with open(tmp_path / "eval" / "per_case.csv") as handle:
        cases = {r["case"]: r for r in csv.DictReader(handle)}
    assert cases["missing"]["status"] == "error" and float(cases["perfect"]["PZ_dice"]) == 1.0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["n_failed"] == 1


def test_evaluate_grid_mismatch_is_a_failed_case_and_empty_ref_dir_an_error(tmp_path):
    refs, preds = tmp_path / "ref", tmp_path / "pred"
    refs.mkdir(), preds.mkdir()
    _save(refs / "a.nii.gz", _reference())
    _save(preds / "a_zones.nii.gz", _reference()[:, :, :6])
    summary = evaluate(preds, refs, tmp_path / "eval")
    assert summary["n_failed"] == 1 and "differs" in summary["errors"]["a"]
    with pytest.raises(MedclError, match="no reference label files"):
        evaluate(preds, tmp_path / "eval", tmp_path / "eval2")


def test_cli_evaluate_exit_code_reflects_failed_cases(tmp_path, capsys):
    from medcl.cli import main

    refs, preds = tmp_path / "ref", tmp_path / "pred"
    refs.mkdir(), preds.mkdir()
    _save(refs / "a.nii.gz", _reference())
    _save(preds / "a_zones.nii.gz", _reference())
    assert main(["zones", "evaluate", str(preds), str(refs), "--out", str(tmp_path / "ok")]) == 0
    assert "PZ: Dice 1.0 over 1" in capsys.readouterr().out
    _save(refs / "b.nii.gz", _reference())
    assert main(["zones", "evaluate", str(preds), str(refs), "--out", str(tmp_path / "bad")]) == 1
