"""``medcl data synth`` / ``medcl data inspect`` handlers, through the real parser when it exists."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import SimpleITK as sitk

from medcl.cli import data as data_cmd
from medcl.errors import MedclError

T2 = "mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"
COR_NRRD = "mri/prostatex-nrrd/ProstateX-0217/t2_tse_cor.nrrd"


def _main(argv: list[str]) -> int:
    cli = pytest.importorskip("medcl.cli")
    return cli.main(argv)


def test_inspect_dicom_json_reports_simpleitk_geometry(shared_data, capsys):
    assert _main(["data", "inspect", str(shared_data / T2), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(shared_data / T2)))
    assert summary["kind"] == "image" and summary["orientation"] == "LPS"
    assert summary["shape"] == [384, 384, 19]
    assert summary["spacing"] == pytest.approx(list(image.GetSpacing()))
    assert summary["origin"] == pytest.approx(list(image.GetOrigin()))
    assert summary["direction"] == pytest.approx(list(image.GetDirection()))
    assert summary["series_description"] == "t2_tse_tra"
    voxels = sitk.GetArrayViewFromImage(image)
    assert summary["intensity"]["max"] == float(voxels.max())
    assert summary["intensity"]["mean"] == pytest.approx(float(voxels.mean()))


def test_inspect_text_output_names_orientation(shared_data, capsys):
    assert _main(["data", "inspect", str(shared_data / COR_NRRD)]) == 0
    lines = dict(map(str.strip, line.split(": ", 1)) for line in capsys.readouterr().out.splitlines())
    assert lines["orientation"] == "LIP" and lines["shape"] == "[320, 320, 15]"


def test_inspect_study_folder_lists_its_series_and_an_unknown_series_is_one_line(shared_data, capsys):
    study = shared_data / Path(T2).parent
    assert _main(["data", "inspect", str(study), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["kind"] == "dicom-study"
    assert sorted(s["description"] for s in listing["series"]) == [
        "ep2d_diff_tra_DYNDIST_ADC", "t2_tse_cor", "t2_tse_sag", "t2_tse_tra"]
    assert {s["description"]: s["files"] for s in listing["series"]}["t2_tse_cor"] == 15
    assert _main(["data", "inspect", str(study)]) == 0
    assert "4 DICOM series" in capsys.readouterr().out
    assert _main(["data", "inspect", str(study), "--series", "t2_haste"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"medcl: error: {study}: no DICOM series matches 't2_haste'") and err.count("\n") == 1
    assert _main(["data", "inspect", str(study), "--series", "ep2d_diff_tra_DYNDIST_ADC", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [84, 128, 19]


@pytest.mark.parametrize("suffix", [".hea", ""])
def test_inspect_ecg_record(shared_data, capsys, suffix):
    pytest.importorskip("medcl.io.ecg")
    record = shared_data / "ecg" / "cinc2021-sample" / f"HR06000{suffix}"
    assert _main(["data", "inspect", str(record), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "ecg"
    assert summary["fs"] == 500 and summary["n_samples"] == 5000
    assert summary["leads"] == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert len(summary["units"]) == 12


def test_inspect_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "scan.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    assert _main(["data", "inspect", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"medcl: error: {bad}: not a readable image (Unable to determine ImageIO reader for \"{bad}\")\n"


def test_synth_dispatches_to_generator_module(tmp_path, monkeypatch, capsys):
    calls = []

    def write_dataset(out_dir, n, seed):
        calls.append((out_dir, n, seed))
        return Path(out_dir) / "manifest.csv"

    fake = types.ModuleType("medcl.data.synthetic.cohort")
    fake.write_dataset = write_dataset
    monkeypatch.setitem(sys.modules, "medcl.data.synthetic.cohort", fake)
    assert _main(["data", "synth", "cohort", "--out", str(tmp_path), "--n", "7", "--seed", "3"]) == 0
    assert calls == [(tmp_path, 7, 3)]
    assert capsys.readouterr().out.strip() == str(tmp_path / "manifest.csv")


def test_synth_errors(tmp_path):
    with pytest.raises(MedclError, match="--n: must be at least 1, got 0"):
        data_cmd.synth("prostate", tmp_path, 0, 0)
    with pytest.raises(MedclError, match="unknown kind 'xray'"):
        data_cmd.synth("xray", tmp_path, 1, 0)


def test_record_detection(tmp_path):
    (tmp_path / "rec.hea").write_text("rec 1 500 10\n")
    assert data_cmd.is_ecg_record(tmp_path / "rec") and data_cmd.is_ecg_record(tmp_path / "rec.hea")
    assert not data_cmd.is_ecg_record(tmp_path / "scan.nii.gz")
    assert not data_cmd.is_ecg_record(tmp_path)


def test_command_module_does_not_import_torch():
    code = "import sys, medcl.cli.data; assert 'torch' not in sys.modules and 'SimpleITK' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
