"""Corpus: ECG records (real CinC/PTB records rewritten bad at test time) through ecg predict/report, data inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_no_traceback, assert_ok, assert_user_error, leftovers, run_cli

CINC = Path("ecg/cinc2021-sample")


def _rewrite(real: Path, out: Path, name: str, *, fs: float | None = None, leads: list[str] | None = None,
             signal=None, decimate: int = 1) -> Path:
    """Rewrite real record HR06000 as WFDB (format 16) with other leads/rate/samples; returns the record path."""
    import wfdb

    rec = wfdb.rdrecord(str(real / CINC / "HR06000"))
    sig = rec.p_signal[::decimate] if signal is None else signal(rec.p_signal)
    names = leads or list(rec.sig_name)
    out.mkdir(parents=True, exist_ok=True)
    placeholder = [f"X{i}" for i in range(len(names))]  # wfdb refuses to write repeated names: patch them in
    wfdb.wrsamp(name, fs=rec.fs / decimate if fs is None else fs, units=["mV"] * sig.shape[1], sig_name=placeholder,
                p_signal=sig, fmt=["16"] * sig.shape[1], adc_gain=[1000.0] * sig.shape[1],
                baseline=[0] * sig.shape[1], write_dir=str(out))
    hea = out / f"{name}.hea"
    first, *lines = hea.read_text().splitlines()
    lines = [" ".join([*ln.split()[:-1], lead]) if i < len(names) else ln for i, (ln, lead) in
             enumerate(zip(lines, [*names, *[""] * len(lines)]))]
    hea.write_text("\n".join([first, *lines]) + "\n")
    return out / name


def _predict(records, ckpt, *extra):
    return run_cli("ecg", "predict", *records, "--checkpoint", ckpt, *extra)


def test_ecg_real_record_predicts(real, ecg_checkpoint, tmp_path):
    run = _predict([real / CINC / "HR06000.hea"], ecg_checkpoint, "--out", tmp_path / "out")
    assert_ok(run)
    assert leftovers(tmp_path / "out") == []


def test_ecg_duplicated_lead_is_refused(real, ecg_checkpoint, tmp_path):
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V1", "V3", "V4", "V5", "V6"]
    rec = _rewrite(real, tmp_path, "dup", leads=names)
    run = _predict([f"{rec}.hea"], ecg_checkpoint)
    line = assert_user_error(run, "dup", "V1", code=1)
    assert "twice" in line or "duplicate" in line


def test_ecg_extra_copy_of_a_lead_is_refused(real, ecg_checkpoint, tmp_path):
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6", "V2"]
    rec = _rewrite(real, tmp_path, "dup13", leads=names, signal=lambda s: np.concatenate([s, s[:, 7:8]], 1))
    assert_user_error(_predict([f"{rec}.hea"], ecg_checkpoint), "dup13", "V2", code=1)


def test_ecg_50hz_for_a_100hz_model(real, ecg_checkpoint, tmp_path):
    rec = _rewrite(real, tmp_path, "low", decimate=10)
    line = assert_user_error(_predict([f"{rec}.hea"], ecg_checkpoint), "low", code=1)
    assert "50" in line and "100" in line


def _header_with_fs_zero(real, tmp_path) -> Path:
    """A copy of a real record whose header states a sampling rate of 0 Hz."""
    hea = Path(f"{_rewrite(real, tmp_path, 'fs0')}.hea")
    first, *rest = hea.read_text().splitlines()
    parts = first.split()
    parts[2] = "0"
    hea.write_text("\n".join([" ".join(parts), *rest]) + "\n")
    return hea


def test_ecg_fs_zero_inspect(real, tmp_path):
    hea = _header_with_fs_zero(real, tmp_path)
    line = assert_user_error(run_cli("data", "inspect", hea), "fs0")
    assert "ZeroDivision" not in line


def test_ecg_fs_zero_predict(real, ecg_checkpoint, tmp_path):
    hea = _header_with_fs_zero(real, tmp_path)
    line = assert_user_error(_predict([hea], ecg_checkpoint), "fs0", code=1)
    assert "ZeroDivision" not in line


@pytest.mark.parametrize("fs", ["0", "-100", "nan"])
def test_ecg_array_fs_option(fs, real, ecg_checkpoint, tmp_path):
    import wfdb

    arr = tmp_path / "rec.npy"
    np.save(arr, wfdb.rdrecord(str(real / CINC / "HR06001")).p_signal.T.astype(np.float32))
    assert_user_error(_predict([arr], ecg_checkpoint, "--fs", fs, "--leads",
                               "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"), "--fs")


def test_ecg_array_duplicated_lead_names(real, ecg_checkpoint, tmp_path):
    import wfdb

    arr = tmp_path / "rec.npy"
    np.save(arr, wfdb.rdrecord(str(real / CINC / "HR06001")).p_signal.T.astype(np.float32))
    run = _predict([arr], ecg_checkpoint, "--fs", "500", "--leads", "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V4,V6")
    assert_user_error(run, "V4", code=1)


def test_ecg_inspect_header_without_signal_file(real, tmp_path):
    shutil.copy(real / CINC / "HR06002.hea", tmp_path / "HR06002.hea")
    assert_user_error(run_cli("data", "inspect", tmp_path / "HR06002.hea"), "HR06002", "HR06002.mat")


def test_ecg_predict_header_without_signal_file(real, ecg_checkpoint, tmp_path):
    shutil.copy(real / CINC / "HR06002.hea", tmp_path / "HR06002.hea")
    assert_user_error(_predict([tmp_path / "HR06002.hea"], ecg_checkpoint), "HR06002.mat", code=1)


def test_ecg_truncated_signal_file(real, ecg_checkpoint, tmp_path):
    for suffix in (".hea", ".mat"):
        shutil.copy(real / CINC / f"HR06003{suffix}", tmp_path / f"HR06003{suffix}")
    mat = tmp_path / "HR06003.mat"
    mat.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2])
    assert_user_error(_predict([tmp_path / "HR06003.hea"], ecg_checkpoint), "HR06003", code=1)


def test_ecg_nan_samples(real, ecg_checkpoint, tmp_path):
    arr = tmp_path / "nan.npy"
    import wfdb

    sig = wfdb.rdrecord(str(real / CINC / "HR06001")).p_signal.T.astype(np.float32)
    sig[3, 100:200] = np.nan
    np.save(arr, sig)
    run = _predict([arr], ecg_checkpoint, "--fs", "500", "--leads", "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6")
    assert_user_error(run, "nan.npy", "NaN", code=1)


def test_ecg_header_without_signal_lines(ecg_checkpoint, tmp_path):
    (tmp_path / "bad.hea").write_text("bad 12 500 5000\n")
    assert_user_error(_predict([tmp_path / "bad.hea"], ecg_checkpoint), "bad", code=1)


def test_ecg_skipped_lines_go_to_stderr(real, ecg_checkpoint, tmp_path):
    (tmp_path / "bad.hea").write_text("bad 12 500 5000\n")
    run = _predict([real / CINC / "HR06000.hea", tmp_path / "bad.hea"], ecg_checkpoint, "--out", tmp_path / "out")
    assert_no_traceback(run)
    assert run.code == 1
    assert not any("skipped" in ln.split(" into ")[0] or "/bad" in ln for ln in run.out.splitlines()), run.out
    assert any("/bad" in ln for ln in run.error_lines())


def test_ecg_predict_batch_size_zero(real, ecg_checkpoint):
    assert_user_error(_predict([real / CINC / "HR06000.hea"], ecg_checkpoint, "--batch-size", "0"), "--batch-size")


def test_ecg_report_ig_steps_zero(real, ecg_checkpoint, tmp_path):
    run = run_cli("ecg", "report", real / CINC / "HR06000.hea", "--checkpoint", ecg_checkpoint,
                  "--out", tmp_path / "rep", "--ig-steps", "0")
    assert_user_error(run, "--ig-steps")
    assert not (tmp_path / "rep").exists()


def test_ecg_report_batch_size_zero(real, ecg_checkpoint, tmp_path):
    run = run_cli("ecg", "report", real / CINC / "HR06000.hea", "--checkpoint", ecg_checkpoint,
                  "--out", tmp_path / "rep", "--batch-size", "0")
    assert_user_error(run, "--batch-size")


def test_ecg_report_with_a_failure_exits_1(real, ecg_checkpoint, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.hea").write_text("bad 12 500 5000\n")
    run = run_cli("ecg", "report", real / CINC / "HR06000.hea", tmp_path / "in" / "bad.hea",
                  "--checkpoint", ecg_checkpoint, "--out", tmp_path / "rep", "--ig-steps", "2")
    assert_user_error(run, "bad", code=1)
    assert (tmp_path / "rep" / "index.html").is_file()


def test_ecg_report_holds_no_absolute_record_path(real, ecg_checkpoint, tmp_path):
    folder = tmp_path / "records"
    for suffix in (".hea", ".mat"):
        shutil.copy(real / CINC / f"HR06004{suffix}", folder.mkdir(exist_ok=True) or folder / f"HR06004{suffix}")
    run = run_cli("ecg", "report", folder / "HR06004.hea", "--checkpoint", ecg_checkpoint,
                  "--out", tmp_path / "rep", "--ig-steps", "2")
    assert_ok(run)
    for name in ("report.json", "index.html"):
        assert str(folder) not in (tmp_path / "rep" / name).read_text(), name
    assert leftovers(tmp_path / "rep") == []


def test_ecg_predictions_hold_no_absolute_record_path(real, ecg_checkpoint, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for suffix in (".hea", ".mat"):
        shutil.copy(real / CINC / f"HR06005{suffix}", folder / f"HR06005{suffix}")
    run = _predict([folder / "HR06005.hea"], ecg_checkpoint, "--out", tmp_path / "out")
    assert_ok(run)
    text = (tmp_path / "out" / "predictions.json").read_text()
    assert str(folder) not in text
    assert json.loads(text)["records"][0]["record_id"] == "HR06005"


def test_ecg_too_short_record(real, ecg_checkpoint, tmp_path):
    rec = _rewrite(real, tmp_path, "short", signal=lambda s: s[:1500])
    assert_user_error(_predict([f"{rec}.hea"], ecg_checkpoint), "short", code=1)


def test_ecg_ptb_1000hz_real_record(real, ecg_checkpoint):
    assert_ok(_predict([real / "ecg" / "ptb-diagnostic" / "s0010_re.hea"], ecg_checkpoint))


def test_ecg_out_below_a_file(real, ecg_checkpoint, tmp_path):
    (tmp_path / "f").write_text("x")
    assert_user_error(_predict([real / CINC / "HR06000.hea"], ecg_checkpoint, "--out", tmp_path / "f" / "o"), "f")


def test_ecg_out_not_writable(real, ecg_checkpoint):
    assert_user_error(_predict([real / CINC / "HR06000.hea"], ecg_checkpoint, "--out", "/proc/medcl-o"), "/proc/medcl-o")


def test_ecg_predictions_same_name_in_two_folders_stay_distinct(real, ecg_checkpoint, tmp_path):
    """``a/HR06005`` and ``b/HR06005`` outside the working folder: two distinct record names, never one."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for suffix in (".hea", ".mat"):
            shutil.copy(real / CINC / f"HR06005{suffix}", tmp_path / sub / f"HR06005{suffix}")
    run = _predict([tmp_path / "a" / "HR06005.hea", tmp_path / "b" / "HR06005.hea"], ecg_checkpoint,
                   "--out", tmp_path / "out")
    assert_ok(run)
    names = [r["record"] for r in json.loads((tmp_path / "out" / "predictions.json").read_text())["records"]]
    assert names == ["HR06005.hea", "HR06005.hea_2"], names
    assert str(tmp_path) not in (tmp_path / "out" / "predictions.csv").read_text()


# ----------------------------------------------------------------------------------------- a hostile folder
# One ``ecg predict FOLDER`` call over real records rewritten bad (as a user meets them: a folder of mixed
# files); each case below asserts its own record's outcome in that one batch.

HOSTILE_ECG = ("nan_wfdb", "flat_lead", "all_flat", "gain0", "hz257", "leads15", "long_signal", "dossier été")


def _gain_zero(hea: Path) -> None:
    first, *lines = hea.read_text().splitlines()
    hea.write_text("\n".join([first, *(ln.replace(" 1000.0(0)/mV", " 0(0)/mV").replace(" 1000(0)/mV", " 0(0)/mV")
                                      for ln in lines)]) + "\n")


@pytest.fixture(scope="module")
def hostile_ecg(real, ecg_checkpoint, tmp_path_factory):
    """``ecg predict`` of one folder of bad records (and a good one in a non-ASCII, space-holding sub-folder,
    beside a symlink loop and a second name of one record); returns (run, predictions, errors, folder)."""
    import csv

    from scipy.signal import resample

    root = tmp_path_factory.mktemp("hostile_ecg")
    folder = root / "in"
    lead_names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]

    def with_nan(s):
        s = s.copy()
        s[100:200, 3] = np.nan
        return s

    def flat_v2(s):
        s = s.copy()
        s[:, 7] = 0.0
        return s

    _rewrite(real, folder, "nan_wfdb", signal=with_nan)
    _rewrite(real, folder, "flat_lead", signal=flat_v2)
    _rewrite(real, folder, "all_flat", signal=lambda s: np.zeros_like(s))
    _gain_zero(Path(f"{_rewrite(real, folder, 'gain0')}.hea"))
    _rewrite(real, folder, "hz257", fs=257, signal=lambda s: resample(s, 2570, axis=0))
    _rewrite(real, folder, "leads15", leads=[*lead_names, "vx", "vy", "vz"],
             signal=lambda s: np.concatenate([s, s[:, :3]], 1))
    for suffix in (".hea", ".mat"):
        shutil.copy(real / CINC / f"HR06003{suffix}", folder / f"long_signal{suffix}")
    (folder / "long_signal.hea").write_text((folder / "long_signal.hea").read_text().replace("HR06003", "long_signal"))
    mat = folder / "long_signal.mat"
    mat.write_bytes(mat.read_bytes() + mat.read_bytes()[24:])  # twice the samples the header declares
    good = folder / "dossier été" / "patient 1"
    good.mkdir(parents=True)
    for suffix in (".hea", ".mat"):
        shutil.copy(real / CINC / f"HR06001{suffix}", good / f"HR06001{suffix}")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    out = root / "out ü"
    run = _predict([folder, good / "HR06001.hea"], ecg_checkpoint, "--out", out)
    preds = json.loads((out / "predictions.json").read_text())
    with (out / "errors.csv").open(newline="") as fh:
        errors = {Path(r["record"]).name: r["error"] for r in csv.DictReader(fh)}
    return run, {Path(r["record"]).name: r for r in preds["records"]}, errors, out


def _error_line(run, name: str) -> str:
    lines = [ln for ln in run.error_lines() if "error:" in ln and f"{name}:" in ln]
    assert len(lines) == 1, (name, run.error_lines())
    return lines[0]


def test_ecg_hostile_folder_is_a_batch_with_failures(hostile_ecg):
    run, preds, errors, out = hostile_ecg
    assert_no_traceback(run)
    assert run.code == 1, run.err[-800:]
    assert sorted(errors) == ["all_flat", "gain0", "long_signal", "nan_wfdb"], errors
    assert sorted(preds) == ["HR06001", "flat_lead", "hz257", "leads15"], sorted(preds)
    assert leftovers(out) == []


def test_ecg_wfdb_nan_samples(hostile_ecg):
    run, _, errors, _ = hostile_ecg
    assert "NaN" in _error_line(run, "nan_wfdb") and "aVR" in errors["nan_wfdb"]


def test_ecg_flat_lead_warns_and_is_recorded(hostile_ecg):
    run, preds, _, _ = hostile_ecg
    assert preds["flat_lead"]["meta"]["flat_leads"] == ["V2"]
    assert preds["HR06001"]["meta"]["flat_leads"] == []
    warnings = [ln for ln in run.error_lines() if "warning:" in ln]
    assert len(warnings) == 1 and "flat_lead" in warnings[0] and "V2" in warnings[0], warnings


def test_ecg_all_leads_flat_is_refused(hostile_ecg):
    run, _, errors, _ = hostile_ecg
    assert "flat" in _error_line(run, "all_flat") and "every lead" in errors["all_flat"]


def test_ecg_adc_gain_zero_is_refused(hostile_ecg):
    run, _, errors, _ = hostile_ecg
    line = _error_line(run, "gain0")
    assert "gain0.hea" in line and "gain" in line and "uncalibrated" in errors["gain0"]


def test_ecg_adc_gain_zero_inspect(hostile_ecg):
    hea = hostile_ecg[3].parent / "in" / "gain0.hea"
    assert "uncalibrated" in assert_user_error(run_cli("data", "inspect", hea), "gain0.hea", "ADC gain")


def test_ecg_257hz_record_predicts(hostile_ecg):
    meta = hostile_ecg[1]["hz257"]["meta"]
    assert meta["fs"] == 257.0 and meta["duration_s"] == pytest.approx(10.0)


def test_ecg_15_lead_record_predicts(hostile_ecg):
    entry = hostile_ecg[1]["leads15"]
    assert entry["meta"]["fs"] == 500.0 and entry["record_id"] == "leads15"


def test_ecg_signal_file_longer_than_header(hostile_ecg):
    run, _, errors, _ = hostile_ecg
    assert "long_signal.mat" in _error_line(run, "long_signal") and "disagree" in errors["long_signal"]


def test_ecg_non_ascii_space_paths_symlink_loop_and_a_record_named_twice(hostile_ecg):
    """The record in ``dossier été/patient 1`` is found through the folder, through a symlink loop
    (``in/loop -> in``) that is not followed, and by its own name: it is predicted exactly once."""
    run, preds, _, out = hostile_ecg
    assert [n for n in preds if n.startswith("HR06001")] == ["HR06001"]
    assert preds["HR06001"]["record_id"] == "HR06001"
    assert "dossier été" not in (out / "predictions.json").read_text()  # no folder names in outputs


def test_ecg_empty_folder(ecg_checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(_predict([tmp_path / "empty"], ecg_checkpoint), "empty", "no ECG files")
