"""Corpus, round s4: wrong units, wrong dtypes, foreign CSV dialects, lying headers, ambiguous geometry,
booleans where numbers belong, empty labels and checkpoints that load but cannot be right.

Every input is derived at test time from a real file (CinC record HR06000, a Prostate158 T2 and label).
"""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import MEDCL, REPO, assert_no_traceback, assert_ok, assert_user_error, crop_real_t2, run_cli

CINC = Path("ecg/cinc2021-sample")
P158 = Path("mri/prostate158-sample")
LEADS = "I,II,III,aVR,aVL,aVF,V1,V2,V3,V4,V5,V6"
FAST = ("--no-tta", "--roi", "center")


@pytest.fixture(scope="module")
def mv(real) -> np.ndarray:
    """Real record HR06000 in mV, (12, 5000) at 500 Hz, leads in the standard order."""
    import wfdb

    rec = wfdb.rdrecord(str(real / CINC / "HR06000"))
    assert rec.sig_name == LEADS.split(",")
    return rec.p_signal.T.copy()


def _predict(path: Path, ckpt: Path, *extra: str):
    return run_cli("ecg", "predict", path, "--checkpoint", ckpt, "--fs", "500", *extra)


def _npy(tmp_path: Path, name: str, data: np.ndarray) -> Path:
    path = tmp_path / name
    np.save(path, data)
    return path


def _csv(path: Path, signal: np.ndarray, delimiter: str = ",", encoding: str = "utf-8", decimal: str = ".") -> Path:
    """Samples x leads with a header row of lead names, as a spreadsheet exports them."""
    rows = [delimiter.join(LEADS.split(","))]
    rows += [delimiter.join(f"{v:.4f}".replace(".", decimal) for v in row) for row in signal.T]
    path.write_text("\n".join(rows) + "\n", encoding=encoding)
    return path


def _probabilities(run) -> list[float]:
    (entry,) = json.loads(run.out[: run.out.rindex("}") + 1])["records"]  # a summary line follows the JSON
    return entry["probabilities"]


# ------------------------------------------------------------------------------------------ ECG units


@pytest.mark.parametrize(("scale", "unit"), [(1000.0, "µV"), (1e-3, "V")], ids=["microvolts", "volts"])
def test_ecg_npy_in_the_wrong_unit_is_refused(mv, ecg_checkpoint, tmp_path, scale, unit):
    path = _npy(tmp_path, f"in_{unit}.npy", mv * scale)
    line = assert_user_error(_predict(path, ecg_checkpoint, "--leads", LEADS), path.name, "unit", code=1)
    assert unit in line


def test_ecg_csv_in_microvolts_is_refused(mv, ecg_checkpoint, tmp_path):
    path = _csv(tmp_path / "uv.csv", mv * 1000)
    assert_user_error(_predict(path, ecg_checkpoint), "uv.csv", "µV", code=1)


def test_ecg_int16_adc_counts_as_mv_are_refused(mv, ecg_checkpoint, tmp_path):
    path = _npy(tmp_path, "counts.npy", np.round(mv * 1000).astype(np.int16))  # gain 1000/mV, never converted
    assert_user_error(_predict(path, ecg_checkpoint, "--leads", LEADS), "counts.npy", "ADC", code=1)


def test_ecg_hdf5_in_microvolts_is_refused(mv, ecg_checkpoint, tmp_path):
    import h5py

    path = tmp_path / "sph_uv.h5"
    with h5py.File(path, "w") as fh:
        fh["ecg"] = mv * 1000
    assert_user_error(_predict(path, ecg_checkpoint), "sph_uv.h5", "µV", code=1)


def test_ecg_wfdb_header_says_uv_for_mv_samples(real, ecg_checkpoint, tmp_path):
    """A header whose units say uV while gain and samples are mV (amplitudes read 1000x too small)."""
    for ext in (".hea", ".mat"):
        (tmp_path / f"HR06000{ext}").write_bytes((real / CINC / f"HR06000{ext}").read_bytes())
    hea = tmp_path / "HR06000.hea"
    text = hea.read_text()
    assert "/mv" in text
    hea.write_text(text.replace("/mv", "/uV"))
    assert_user_error(run_cli("ecg", "predict", hea, "--checkpoint", ecg_checkpoint), "HR06000", "unit", code=1)


def test_ecg_header_without_signal_length_inspects(real, ecg_checkpoint, tmp_path):
    """The number of samples is optional in a WFDB header (the signal file's size gives it)."""
    for ext in (".hea", ".mat"):
        (tmp_path / f"HR06001{ext}").write_bytes((real / CINC / f"HR06001{ext}").read_bytes())
    hea = tmp_path / "HR06001.hea"
    first, *rest = hea.read_text().splitlines()
    assert first.split()[3] == "5000"
    hea.write_text("\n".join([" ".join(first.split()[:3]), *rest]) + "\n")
    run = run_cli("data", "inspect", hea, "--json")
    assert_ok(run)
    assert json.loads(run.out)["n_samples"] == 5000
    assert_ok(run_cli("ecg", "predict", hea, "--checkpoint", ecg_checkpoint))


def test_ecg_inspect_npy_in_microvolts(mv, tmp_path):
    path = _npy(tmp_path, "uv.npy", mv * 1000)
    assert_user_error(run_cli("data", "inspect", path, "--fs", "500", "--leads", LEADS), "uv.npy", "µV")


def test_ecg_absurd_sampling_rate_option(mv, ecg_checkpoint, tmp_path):
    """``--fs 1e9`` (a typo): no resampler's internal error ("up and down must be >= 1")."""
    path = _npy(tmp_path, "ok.npy", mv)
    run = run_cli("ecg", "predict", path, "--checkpoint", ecg_checkpoint, "--fs", "1e9", "--leads", LEADS)
    line = assert_user_error(run, "ok.npy", "1e+09 Hz", code=1)
    assert "up and down" not in line


# ------------------------------------------------------------------------------------------ ECG dtypes and dialects


@pytest.mark.parametrize("kind", ["complex", "bool"])
def test_ecg_npy_of_non_real_numbers_is_refused(mv, ecg_checkpoint, tmp_path, kind):
    data = mv.astype(np.complex128) + 1j if kind == "complex" else mv > 0
    path = _npy(tmp_path, f"{kind}.npy", data)
    run = _predict(path, ecg_checkpoint, "--leads", LEADS)
    assert_user_error(run, path.name, "not real numbers", code=1)
    assert "Warning" not in run.err


def test_ecg_csv_text_cell_names_row_and_column(mv, ecg_checkpoint, tmp_path):
    path = _csv(tmp_path / "text.csv", mv)
    lines = path.read_text().splitlines()
    cells = lines[51].split(",")
    cells[3] = "n/a"
    lines[51] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    line = assert_user_error(_predict(path, ecg_checkpoint), "text.csv", "row 52", code=1)
    assert "column 4" in line and "'n/a'" in line


def test_ecg_csv_with_a_byte_order_mark_predicts(mv, ecg_checkpoint, tmp_path):
    plain = _predict(_csv(tmp_path / "plain.csv", mv), ecg_checkpoint)
    bom = _predict(_csv(tmp_path / "bom.csv", mv, encoding="utf-8-sig"), ecg_checkpoint)  # Excel's "CSV UTF-8"
    assert_ok(plain)
    assert_ok(bom)
    assert _probabilities(bom) == _probabilities(plain)


def test_ecg_semicolon_csv_predicts_as_the_comma_csv(mv, ecg_checkpoint, tmp_path):
    plain = _predict(_csv(tmp_path / "plain.csv", mv), ecg_checkpoint)
    semi = _predict(_csv(tmp_path / "semi.csv", mv, delimiter=";"), ecg_checkpoint)
    assert_ok(semi)
    assert _probabilities(semi) == _probabilities(plain)


def test_ecg_csv_decimal_comma_names_the_cell(mv, ecg_checkpoint, tmp_path):
    path = _csv(tmp_path / "dec.csv", mv, delimiter=";", decimal=",")
    line = assert_user_error(_predict(path, ecg_checkpoint), "dec.csv", "row 2, column 1", code=1)
    assert "not a number" in line


def test_ecg_csv_header_without_samples(ecg_checkpoint, tmp_path):
    path = tmp_path / "head.csv"
    path.write_text(LEADS + "\n")
    assert_user_error(_predict(path, ecg_checkpoint), "head.csv", "no samples", code=1)


def test_ecg_12_sample_array_is_too_short(mv, ecg_checkpoint, tmp_path):
    """12 leads x 12 samples: square (orientation ambiguous) and far too short; no filter's internal error."""
    path = _npy(tmp_path, "square.npy", mv[:, :12])
    line = assert_user_error(_predict(path, ecg_checkpoint, "--leads", LEADS), "square.npy", "samples", code=1)
    assert "padlen" not in line


@pytest.mark.parametrize("kind", ["group", "text_fs", "text_samples"])
def test_ecg_hdf5_malformed(mv, ecg_checkpoint, tmp_path, kind):
    import h5py

    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w") as fh:
        if kind == "group":
            fh.create_group("ecg")
        elif kind == "text_fs":
            fh.create_dataset("ecg", data=mv).attrs["fs"] = "fast"
        else:
            fh["ecg"] = np.array([b"x"] * 12)
    line = assert_user_error(_predict(path, ecg_checkpoint), path.name, code=1)
    assert "cannot read record" not in line and "Error" not in line


# ------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize(("override", "key"), [
    ("train.max_epochs=true", "train.max_epochs"),
    ("train.gradient_clip_val=false", "train.gradient_clip_val"),
    ("data.channel=true", "data.channel"),
    ("data.patch_size=[64,true,8]", "data.patch_size"),
])
def test_cfg_boolean_where_a_number_belongs(override, key):
    line = assert_user_error(run_cli("config", "show", "zones", override), key)
    assert "boolean" in line


@pytest.mark.parametrize(("override", "key"), [
    ("data.pixdim=[0,0.5,3]", "data.pixdim.0"),
    ("data.pixdim=[.nan,0.5,3]", "data.pixdim.0"),
    ("data.pixdim=[0.5,-0.5,3]", "data.pixdim.1"),
    ("data.patch_size=[-64,64,8]", "data.patch_size.0"),
    ("data.pos=.inf", "data.pos"),
])
def test_cfg_zones_sizes_must_be_positive_and_finite(override, key):
    assert_user_error(run_cli("config", "show", "zones", override), key)


@pytest.mark.parametrize(("pipeline", "override", "key"), [
    ("sepclr", "data.spatial_size=[0,48,48]", "data.spatial_size.0"),
    ("ecg", "model.layers=[2,0,2,2]", "model.layers.1"),
])
def test_cfg_other_sizes_must_be_positive(pipeline, override, key):
    assert_user_error(run_cli("config", "show", pipeline, override), key)


def test_opt_negative_channel_on_a_3d_scan(t2, zones_checkpoint, tmp_path):
    run = run_cli("zones", "segment", t2, "--checkpoint", zones_checkpoint, "--out", tmp_path / "o", "--channel", "-1",
                  *FAST)
    assert_user_error(run, "--channel", "-1")
    assert not (tmp_path / "o").exists()


def test_cfg_negative_channel():
    assert_user_error(run_cli("config", "show", "zones", "data.channel=-1"), "data.channel")


def test_cfg_booleans_stay_valid_where_the_schema_says_bool():
    assert_ok(run_cli("config", "show", "zones", "train.deterministic=true", "train.progress_bar=false"))


# ------------------------------------------------------------------------------------------ images


@pytest.fixture(scope="module")
def t2(real, tmp_path_factory) -> Path:
    return crop_real_t2(real, tmp_path_factory.mktemp("t2s4"))


def test_img_qform_and_sform_disagree(t2, zones_checkpoint, tmp_path):
    img = nib.load(t2)
    other = img.affine.copy()
    other[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]) @ other[:3, :3]  # rotated 90 degrees
    other[:3, 3] += (30, -20, 40)
    bad = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    bad.set_sform(img.affine, code=1)
    bad.set_qform(other, code=1)
    path = tmp_path / "qs.nii.gz"
    nib.save(bad, str(path))
    run = run_cli("zones", "segment", path, "--checkpoint", zones_checkpoint, "--out", tmp_path / "o", *FAST)
    assert_user_error(run, "qs.nii.gz", "qform and sform", code=1)
    assert not list((tmp_path / "o").glob("qs*"))


def test_img_sheared_nrrd_is_refused(t2, zones_checkpoint, tmp_path):
    import nrrd

    data = np.asarray(nib.load(t2).dataobj, dtype=np.float32)
    path = tmp_path / "shear.nrrd"
    nrrd.write(str(path), data, {"space": "left-posterior-superior", "space origin": np.zeros(3),
                                 "space directions": np.array([[0.5, 0, 0], [0.3, 0.5, 0], [0, 0, 3.0]])})
    run = run_cli("zones", "segment", path, "--checkpoint", zones_checkpoint, "--out", tmp_path / "o", *FAST)
    assert_user_error(run, "shear.nrrd", "perpendicular", code=1)
    assert_user_error(run_cli("data", "inspect", path), "shear.nrrd", "perpendicular")


def _meta_header(t2: Path, tmp_path: Path) -> tuple[bytes, bytes, bytes]:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(t2), sitk.sitkFloat32), str(tmp_path / "ok.mha"))
    return (tmp_path / "ok.mha").read_bytes().partition(b"ElementDataFile = LOCAL\n")


def _subprocess(*argv: str | os.PathLike) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([*MEDCL, *map(str, argv)], capture_output=True, text=True, env=env, timeout=120)


def test_img_mha_whose_header_lies_gives_one_stderr_line(t2, tmp_path):
    """DimSize larger than the data: ITK's MetaImage reader prints its own two lines from C++ besides failing."""
    head, sep, body = _meta_header(t2, tmp_path)
    path = tmp_path / "lies.mha"
    path.write_bytes(head.replace(b"DimSize = 96 96 12", b"DimSize = 96 96 20") + sep + body)
    proc = _subprocess("data", "inspect", path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [ln for ln in proc.stderr.splitlines() if ln.startswith("medcl: error:")]
    assert len(proc.stderr.splitlines()) == 1 and "lies.mha" in proc.stderr, proc.stderr


def test_img_clean_segment_writes_nothing_on_stderr(t2, zones_checkpoint, tmp_path):
    """MONAI's nvImageCodec reader logged and warned on every zones command (3 lines of noise)."""
    proc = _subprocess("zones", "segment", t2, "--checkpoint", zones_checkpoint, "--out", tmp_path / "o", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""


@pytest.mark.parametrize("kind", ["rgb", "complex", "five_d", "mha_bad_type", "mha_header_only"])
def test_img_unusable_voxel_kinds_inspect(t2, tmp_path, kind):
    img = nib.load(t2)
    data = np.asarray(img.dataobj, dtype=np.float32)
    path = tmp_path / (f"{kind}.mha" if kind.startswith("mha") else f"{kind}.nii.gz")
    if kind == "rgb":
        rgb = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        for c in "RGB":
            rgb[c] = (data / data.max() * 255).astype(np.uint8)
        nib.save(nib.Nifti1Image(rgb, img.affine), str(path))
    elif kind == "complex":
        nib.save(nib.Nifti1Image(data.astype(np.complex64), img.affine), str(path))
    elif kind == "five_d":
        nib.save(nib.Nifti1Image(data[..., None, None].repeat(2, 4), img.affine), str(path))
    else:
        head, sep, body = _meta_header(t2, tmp_path)
        path.write_bytes(head.replace(b"MET_FLOAT", b"MET_WHAT") + sep + body if kind == "mha_bad_type" else head)
    assert_user_error(run_cli("data", "inspect", path), path.name)


def test_img_nifti_header_claiming_terabytes(t2, tmp_path):
    """A float NIfTI header claiming 30000^3 voxels over a 1 kB file: refused before any voxel is read
    (the voxel scan allocated the claimed size first: MemoryError)."""
    img = nib.load(t2)
    raw = bytearray(img.header.binaryblock)
    raw[40:56] = struct.pack("<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)
    path = tmp_path / "huge.nii"
    path.write_bytes(bytes(raw) + b"\0" * 1004)
    line = assert_user_error(run_cli("data", "inspect", path), "huge.nii", "truncated")
    assert "MemoryError" not in line


def test_img_nifti_scl_slope_zero_reads_unscaled(t2, tmp_path):
    """NIfTI: scl_slope 0 means "no scaling" (the voxels as stored), never all-zero voxels."""
    img = nib.load(t2)
    path = tmp_path / "slope0.nii"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), img.affine), str(path))
    raw = bytearray(path.read_bytes())
    raw[112:120] = struct.pack("<2f", 0.0, 0.0)
    path.write_bytes(bytes(raw))
    run = run_cli("data", "inspect", path, "--json")
    assert_ok(run)
    stats = json.loads(run.out)["intensity"]
    stored = np.asarray(img.dataobj).astype(np.int16)
    assert stats["max"] == pytest.approx(float(stored.max()))


# ------------------------------------------------------------------------------------------ datalists


def _zones_train(datalist: Path, out: Path):
    tiny = ["train.max_epochs=1", "train.accelerator=cpu", "train.loggers=[]", "stage2.epochs=0",
            "data.patch_size=[32,32,8]", "data.batch_size=1", "data.samples_per_volume=1", "model.filters=[4,8,8]",
            "data.synthetic_cases=0", "data.synthetic_unlabeled=0"]
    return run_cli("zones", "train", "--config", REPO / "configs/zones/synthetic.yaml", "--out", out,
                   f"data.datalist={datalist}", *tiny)


def _label_variant(real: Path, tmp_path: Path, name: str, fn) -> dict:
    label = nib.load(real / P158 / "001" / "t2_anatomy_reader1.nii.gz")
    data = fn(np.asarray(label.dataobj).astype(np.float32))
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, label.affine, label.header), str(path))
    return {"image": str(real / P158 / "001" / "t2.nii.gz"), "label": str(path)}


def _datalist(tmp_path: Path, real: Path, pair: dict) -> Path:
    good = {"image": str(real / P158 / "002" / "t2.nii.gz"), "label": str(real / P158 / "002" / "t2_anatomy_reader1.nii.gz")}
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [good, pair], "validation": []}))
    return path


def test_dl_all_background_label_is_refused(real, tmp_path):
    pair = _label_variant(real, tmp_path, "empty.nii.gz", np.zeros_like)
    run = _zones_train(_datalist(tmp_path, real, pair), tmp_path / "r")
    assert_user_error(run, "empty.nii.gz", "background")
    assert "Epoch 0" not in run.out + run.err
    assert not (tmp_path / "r" / "model.ckpt").exists()


def test_dl_fractional_label_values_are_refused(real, tmp_path):
    pair = _label_variant(real, tmp_path, "frac.nii.gz", lambda d: d * 0.5)  # a resampled (interpolated) label
    assert_user_error(_zones_train(_datalist(tmp_path, real, pair), tmp_path / "r"), "frac.nii.gz", "0.5")


# ------------------------------------------------------------------------------------------ checkpoints


def _variant_ckpt(src: Path, tmp_path: Path, name: str, fn) -> Path:
    payload = copy.deepcopy(torch.load(src, weights_only=False))
    fn(payload["medcl"])
    path = tmp_path / name
    torch.save(payload, path)
    return path


def _nan_first_weight(p: dict) -> None:
    name = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
    p["state_dict"][name] = torch.full_like(p["state_dict"][name], float("nan"))


def test_ckpt_nan_weights_zones_segment(t2, zones_checkpoint, tmp_path):
    ckpt = _variant_ckpt(zones_checkpoint, tmp_path, "nanz.ckpt", _nan_first_weight)
    run = run_cli("zones", "segment", t2, "--checkpoint", ckpt, "--out", tmp_path / "o", *FAST)
    assert_user_error(run, "nanz.ckpt", "NaN")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_ckpt_nan_weights_ecg_predict(mv, ecg_checkpoint, tmp_path):
    ckpt = _variant_ckpt(ecg_checkpoint, tmp_path, "nane.ckpt", _nan_first_weight)
    assert_user_error(_predict(_npy(tmp_path, "ok.npy", mv), ckpt, "--leads", LEADS), "nane.ckpt", "NaN")


@pytest.mark.parametrize(("name", "fn", "words"), [
    ("thr.ckpt", lambda p: p["extra"].update(thresholds=[0.5] * 3), ("thresholds", "71")),
    ("thr_nan.ckpt", lambda p: p["extra"].update(thresholds=[float("nan")] * 71), ("thresholds",)),
    ("head.ckpt", lambda p: p["extra"].update(head="joint2"), ("head", "joint2")),
    ("labels.ckpt", lambda p: p.update(label_map={"NORM": 0}), ("label set",)),
    ("schema.ckpt", lambda p: p["config"]["model"].update(old_key=3), ("model.old_key",)),
    ("missing.ckpt", lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))), ("weights do not fit",)),
    ("extra.ckpt", lambda p: p["state_dict"].update({"extra.weight": torch.zeros(3)}), ("extra.weight",)),
])
def test_ckpt_ecg_that_loads_but_cannot_be_right(mv, ecg_checkpoint, tmp_path, name, fn, words):
    ckpt = _variant_ckpt(ecg_checkpoint, tmp_path, name, fn)
    run = _predict(_npy(tmp_path, "ok.npy", mv), ckpt, "--leads", LEADS, "--out", tmp_path / "o")
    assert_user_error(run, name, *words)
    assert not (tmp_path / "o" / "predictions.json").exists()


def test_ckpt_zones_config_the_network_refuses(t2, zones_checkpoint, tmp_path):
    ckpt = _variant_ckpt(zones_checkpoint, tmp_path, "cfg.ckpt", lambda p: p["config"]["model"].update(filters=[4, 8]))
    run = run_cli("zones", "segment", t2, "--checkpoint", ckpt, "--out", tmp_path / "o", *FAST)
    assert_no_traceback(run)
    assert_user_error(run, "cfg.ckpt")


# ------------------------------------------------------------------------------------------ faults


def test_fault_sigterm_mid_segment_cleans_up_and_continues(real, zones_checkpoint, tmp_path):
    """SIGTERM (``kill``, a scheduler's limit) while ``zones segment`` writes its second case: exit 143 with one
    line, no temp files, no half-written case, the output lock released (a re-run is not refused)."""
    import signal
    import time

    from conftest import leftovers

    from medcl.pipelines.zones_segment import OUTPUT_SUFFIXES

    scans = tmp_path / "in"
    scans.mkdir()
    for i, case in enumerate(("001", "002", "020")):
        crop_real_t2(real, scans, f"s{i}.nii.gz", case)
    out = tmp_path / "out"
    args = ["zones", "segment", scans, "--checkpoint", zones_checkpoint, "--out", out, *FAST]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*MEDCL, *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 240
    while not (out / "s1_zones.nii.gz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "segment finished before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-800:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "medcl: terminated", err[-800:]
    assert leftovers(out) == []
    for case in ("s0", "s1", "s2"):
        present = [(out / f"{case}{s}").is_file() for s in OUTPUT_SUFFIXES]
        assert all(present) or not any(present), f"half-written case {case}: {present}"
    assert_ok(run_cli(*args, "--continue"))
    assert all((out / f"s{i}{s}").is_file() for i in range(3) for s in OUTPUT_SUFFIXES)
    assert leftovers(out) == []


def test_dicom_undecodable_compressed_series_gives_one_stderr_line(real, tmp_path):
    """A real series re-labelled JPEG 2000 whose frames do not decode: OpenJPEG printed "Expected a SOC marker"
    twice per slice before medcl's error."""
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    folder = tmp_path / "j2k"
    folder.mkdir()
    for src in sorted((real / "mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702").glob("*.dcm"))[:4]:
        ds = pydicom.dcmread(src)
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.save_as(folder / src.name, enforce_file_format=True)
    proc = _subprocess("data", "inspect", folder)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("medcl: error:") and "j2k" in lines[0], proc.stderr[-600:]


def test_fault_two_concurrent_cache_builders_on_one_cache_folder(real, tmp_path):
    """Two processes build the same ECG cache at once: both finish with the same rows, nothing half-written."""
    from conftest import leftovers

    records = sorted(str(p.with_suffix("")) for p in (real / "ecg/ptbxl-real-subset/records100").rglob("*.hea"))[:40]
    script = ("import sys, json; from medcl.data.ecg_cache import build_cache, DecodeParams; "
              "c = build_cache(json.loads(sys.argv[1]), DecodeParams(), cache_dir=sys.argv[2], workers=2); "
              "print(c.row(json.loads(sys.argv[1])[-1]))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([MEDCL[0], "-c", script, json.dumps(records), str(cache)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-600:] for o in outs]
    assert [o[0].split() for o in outs] == [["39"], ["39"]]
    assert leftovers(cache) == []
    (npy,) = cache.glob("*.npy")
    rows = np.load(npy, mmap_mode="r")
    assert rows.shape == (40, 12, 1000) and np.isfinite(rows).all() and np.abs(rows).sum(axis=(1, 2)).min() > 0
