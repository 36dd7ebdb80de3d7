"""Corpus: scans (real Prostate158 / ProstateX files made bad at test time) through zones segment and data inspect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import (
    assert_no_traceback,
    assert_ok,
    assert_user_error,
    crop_real_t2,
    leftovers,
    run_cli,
    write_nifti,
)

T2_TRA = Path("mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702")
FAST = ("--no-tta", "--roi", "center")


@pytest.fixture(scope="module")
def t2(real, tmp_path_factory) -> Path:
    return crop_real_t2(real, tmp_path_factory.mktemp("t2"))


def _segment(inputs, ckpt, out, *extra):
    return run_cli("zones", "segment", *inputs, "--checkpoint", ckpt, "--out", out, *FAST, *extra)


def _variant(t2: Path, path: Path, fn) -> Path:
    img = nib.load(t2)
    data, affine = fn(np.asarray(img.dataobj, dtype=np.float32), img.affine.copy())
    return write_nifti(path, data.astype(np.float32), affine)


def test_img_real_t2_segments_cleanly(t2, zones_checkpoint, tmp_path):
    run = _segment([t2], zones_checkpoint, tmp_path / "out")
    assert_ok(run)
    assert (tmp_path / "out" / "t2_zones.nii.gz").is_file() and leftovers(tmp_path / "out") == []


def test_img_constant_t2_is_refused(t2, zones_checkpoint, tmp_path):
    blank = _variant(t2, tmp_path / "blank.nii.gz", lambda d, a: (np.full_like(d, 312.0), a))
    run = _segment([blank], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "blank.nii.gz", "constant", code=1)
    assert not (tmp_path / "out" / "blank_zones.nii.gz").exists()


def test_img_near_constant_t2_is_refused(t2, zones_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    near = _variant(t2, tmp_path / "near.nii.gz", lambda d, a: (300.0 + 1e-3 * rng.standard_normal(d.shape), a))
    run = _segment([near], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "near.nii.gz", "constant", code=1)
    assert not (tmp_path / "out" / "near_zones.nii.gz").exists()


def test_img_zero_spacing_is_an_error_not_1mm(t2, zones_checkpoint, tmp_path):
    bad = write_nifti(tmp_path / "zero.nii.gz", np.asarray(nib.load(t2).dataobj), pixdim=(0.0, 0.0, 0.0))
    run = _segment([bad], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "zero.nii.gz", "spacing", code=1)
    assert not (tmp_path / "out" / "zero_volumes.json").exists()


def test_img_zero_spacing_inspect(t2, tmp_path):
    bad = write_nifti(tmp_path / "zero.nii.gz", np.asarray(nib.load(t2).dataobj), pixdim=(0.5, 0.0, 3.0))
    assert_user_error(run_cli("data", "inspect", bad), "zero.nii.gz", "spacing")


def test_img_negative_pixdim_without_affine(t2, tmp_path):
    bad = write_nifti(tmp_path / "neg.nii.gz", np.asarray(nib.load(t2).dataobj), pixdim=(0.5, -0.5, 3.0))
    assert_user_error(run_cli("data", "inspect", bad), "neg.nii.gz", "spacing")


def test_img_absurd_500mm_voxels(t2, zones_checkpoint, tmp_path):
    huge = _variant(t2, tmp_path / "huge.nii.gz", lambda d, a: (d, np.diag([500.0, 500.0, 500.0, 1.0])))
    run = _segment([huge], zones_checkpoint, tmp_path / "out")
    line = assert_user_error(run, "huge.nii.gz", "spacing", code=1)
    assert "RuntimeError" not in line and "alloc" not in line


def test_img_absurd_tiny_voxels(t2, tmp_path):
    tiny = _variant(t2, tmp_path / "tiny.nii.gz", lambda d, a: (d, np.diag([1e-5, 1e-5, 1e-5, 1.0])))
    assert_user_error(run_cli("data", "inspect", tiny), "tiny.nii.gz", "spacing")


def test_img_zero_spacing_nrrd(t2, tmp_path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(t2))
    path = tmp_path / "zero.nrrd"
    sitk.WriteImage(image, str(path))
    text = path.read_bytes()
    head, _, body = text.partition(b"\n\n")
    lines = [b"space directions: (0,0,0) (0,0.5,0) (0,0,3)" if ln.startswith(b"space directions") else ln
             for ln in head.split(b"\n")]
    path.write_bytes(b"\n".join(lines) + b"\n\n" + body)
    run = run_cli("data", "inspect", path)
    assert_user_error(run, "zero.nrrd")


def test_img_nan_voxels(t2, tmp_path):
    nan = _variant(t2, tmp_path / "nan.nii.gz", lambda d, a: (np.where(d > d.mean(), np.nan, d), a))
    assert_user_error(run_cli("data", "inspect", nan), "nan.nii.gz", "NaN")


def test_img_truncated_nifti(t2, tmp_path):
    raw = tmp_path / "cut.nii"
    nib.save(nib.load(t2), str(raw))
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    assert_user_error(run_cli("data", "inspect", raw), "cut.nii", "truncated")


def test_img_2d_image(t2, tmp_path):
    flat = write_nifti(tmp_path / "flat.nii.gz", np.asarray(nib.load(t2).dataobj)[:, :, 0])
    assert_user_error(run_cli("data", "inspect", flat), "flat.nii.gz", "dimensions")


def test_img_single_slice_segment(t2, zones_checkpoint, tmp_path):
    one = _variant(t2, tmp_path / "one.nii.gz", lambda d, a: (d[:, :, :1], a))
    assert_user_error(_segment([one], zones_checkpoint, tmp_path / "out"), "one.nii.gz", code=1)


def test_img_missing_input_in_batch(t2, zones_checkpoint, tmp_path):
    run = _segment([t2, tmp_path / "absent.nii.gz"], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "absent.nii.gz", code=1)
    assert (tmp_path / "out" / "t2_zones.nii.gz").is_file()


def test_img_colliding_case_names_never_overwrite(t2, zones_checkpoint, tmp_path):
    inputs = []
    for sub, name in (("x", "s"), ("y", "s"), ("z", "s_2")):
        (tmp_path / sub).mkdir()
        inputs.append(shutil.copy(t2, tmp_path / sub / f"{name}.nii.gz"))
    out = tmp_path / "out"
    assert_ok(_segment(inputs, zones_checkpoint, out))
    written = sorted(out.glob("*_volumes.json"))
    assert len(written) == 3, [p.name for p in written]
    assert sorted(json.loads(p.read_text())["input"] for p in written) == sorted(map(str, inputs))


# ----------------------------------------------------------------------------------------- options


@pytest.mark.parametrize("values", [("0", "80", "120"), ("-10", "80", "120"), ("80", "nan", "120")],
                         ids=["zero", "negative", "nan"])
def test_opt_roi_mm_must_be_positive(values, t2, zones_checkpoint, tmp_path):
    run = _segment([t2], zones_checkpoint, tmp_path / "out", "--roi-mm", *values)
    assert_user_error(run, "--roi-mm")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["1.5", "1", "-0.2"])
def test_opt_overlap_in_unit_interval(value, t2, zones_checkpoint, tmp_path):
    run = _segment([t2], zones_checkpoint, tmp_path / "out", "--overlap", value)
    line = assert_user_error(run, "--overlap")
    assert "t2.nii.gz" not in line


def test_opt_sw_batch_size_zero(t2, zones_checkpoint, tmp_path):
    assert_user_error(_segment([t2], zones_checkpoint, tmp_path / "out", "--sw-batch-size", "0"), "--sw-batch-size")


def test_out_below_a_file(t2, zones_checkpoint, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    assert_user_error(_segment([t2], zones_checkpoint, tmp_path / "file.txt" / "sub"), "file.txt")


def test_out_not_writable(t2, zones_checkpoint):
    assert_user_error(_segment([t2], zones_checkpoint, "/proc/medcl-out"), "/proc/medcl-out")


def test_out_is_the_input_folder(t2, zones_checkpoint):
    assert_user_error(_segment([t2], zones_checkpoint, t2.parent), str(t2.parent))


# ----------------------------------------------------------------------------------------- DICOM


@pytest.fixture()
def dicom_copy(real, tmp_path) -> Path:
    folder = tmp_path / "t2tra"
    shutil.copytree(real / T2_TRA, folder)
    return folder


def _sorted_slices(folder: Path) -> list[Path]:
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    return sorted(files, key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


def test_dicom_real_series_inspects(dicom_copy):
    run = run_cli("data", "inspect", dicom_copy, "--json")
    assert_ok(run)
    assert json.loads(run.out)["shape"] == [384, 384, 19]


def test_dicom_missing_slice_is_refused(dicom_copy):
    _sorted_slices(dicom_copy)[9].unlink()
    assert_user_error(run_cli("data", "inspect", dicom_copy), "t2tra", "slice")


def test_dicom_missing_slice_segment_is_refused(dicom_copy, zones_checkpoint, tmp_path):
    _sorted_slices(dicom_copy)[9].unlink()
    run = _segment([dicom_copy], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "t2tra", "slice", code=1)
    assert not list((tmp_path / "out").glob("*_zones.nii.gz"))


def test_dicom_missing_slice_allow_nonuniform_resamples(dicom_copy, zones_checkpoint, tmp_path):
    _sorted_slices(dicom_copy)[9].unlink()
    run = _segment([dicom_copy], zones_checkpoint, tmp_path / "out", "--allow-nonuniform")
    assert_ok(run)
    out = nib.load(tmp_path / "out" / "t2tra_zones.nii.gz")
    assert out.shape[2] == 19 and np.allclose(nib.affines.voxel_sizes(out.affine)[2], 3.0, atol=1e-3)


def _sepclr_on(scans: list[Path], out: Path, *flags: str):
    from conftest import REPO

    manifest = out.parent / "manifest.csv"
    manifest.write_text("path,group\n" + "".join(f"{p},{g}\n" for p, g in zip(scans, ("background", "target"))))
    return run_cli("sepclr", "train", "--config", REPO / "configs/sepclr/cohort.yaml", "--out", out, *flags,
                   f"data.manifest={manifest}", "data.batch_size=2", "model.width=4", "train.max_steps=1",
                   "train.accelerator=cpu", "train.loggers=[]")


def test_dicom_missing_slice_sepclr_train_is_refused(real, dicom_copy, tmp_path):
    _sorted_slices(dicom_copy)[9].unlink()
    other = crop_real_t2(real, tmp_path, "other.nii.gz")
    run = _sepclr_on([other, dicom_copy], tmp_path / "r")
    assert_user_error(run, "t2tra", "slice", "--allow-nonuniform")
    assert not (tmp_path / "r" / "model.ckpt").exists()


def test_dicom_missing_slice_sepclr_train_allow_nonuniform_resamples(real, dicom_copy, tmp_path):
    _sorted_slices(dicom_copy)[9].unlink()
    other = crop_real_t2(real, tmp_path, "other.nii.gz")
    assert_ok(_sepclr_on([other, dicom_copy], tmp_path / "r", "--allow-nonuniform"))
    assert (tmp_path / "r" / "model.ckpt").is_file()


def test_dicom_nonuniform_spacing_is_refused(dicom_copy):
    import pydicom

    victim = _sorted_slices(dicom_copy)[5]
    ds = pydicom.dcmread(victim)
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [float(ds.ImagePositionPatient[2]) + 1.2]
    ds.save_as(victim)
    assert_user_error(run_cli("data", "inspect", dicom_copy), "t2tra", "spacing")


def test_dicom_truncated_slice_is_refused(dicom_copy, zones_checkpoint, tmp_path):
    victim = _sorted_slices(dicom_copy)[7]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size * 2 // 3])
    run = _segment([dicom_copy], zones_checkpoint, tmp_path / "out")
    assert_user_error(run, "t2tra", code=1)
    assert not list((tmp_path / "out").glob("*_zones.nii.gz"))


# ----------------------------------------------------------------------------------------- a hostile batch
# One ``zones segment`` call over a batch a user could hand over: a non-ASCII, space-holding folder with a
# symlink loop, one of its scans named again, an empty folder, an oblique DICOM series (with a symlink loop
# inside), a sheared (gantry-tilted) one, a 4D NIfTI, a T2 with one NaN voxel and a truncated .nii.gz.


def _tilted_series(real: Path, out: Path, shear: bool) -> Path:
    """The real T2 series rotated 10 deg in-plane and tilted 20 deg; slices stacked along their normal,
    or (``shear``) along the scanner axis as a gantry-tilted acquisition stores them."""
    import pydicom

    out.mkdir(parents=True)
    slices = sorted((pydicom.dcmread(f) for f in (real / T2_TRA).glob("*.dcm")),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    a, b = np.radians(20), np.radians(10)
    rot = (np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
           @ np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]]))
    row, col = rot[:, 0], rot[:, 1]
    step = float(slices[0].SliceThickness) * (np.array([0.0, 0.0, 1.0]) if shear else np.cross(row, col))
    origin = np.array(slices[0].ImagePositionPatient, dtype=float)
    for k, ds in enumerate(slices):
        ds.ImageOrientationPatient = [float(x) for x in (*row, *col)]
        ds.ImagePositionPatient = [float(x) for x in origin + k * step]
        ds.save_as(out / f"{k:03d}.dcm")
    return out


@pytest.fixture(scope="module")
def hostile_batch(real, t2, zones_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_img")
    named = root / "scans été"
    named.mkdir()
    scan = shutil.copy(t2, named / "ö t2.nii.gz")
    (named / "loop").symlink_to(named, target_is_directory=True)
    (root / "empty").mkdir()
    oblique = _tilted_series(real, root / "oblique", shear=False)
    (oblique / "again").symlink_to(oblique, target_is_directory=True)
    sheared = _tilted_series(real, root / "sheared", shear=True)
    img = nib.load(t2)
    data = np.asarray(img.dataobj, dtype=np.float32)
    four = write_nifti(root / "four_d.nii.gz", np.stack([data, data], -1), img.affine)
    nan = data.copy()
    nan[40, 40, 5] = np.nan
    nan = write_nifti(root / "nan.nii.gz", nan, img.affine)
    cut = root / "cut.nii.gz"
    cut.write_bytes(Path(t2).read_bytes()[: Path(t2).stat().st_size // 2])
    out = root / "out"
    run = _segment([named, scan, root / "empty", oblique, sheared, four, nan, cut], zones_checkpoint, out)
    import csv

    with (out / "summary.csv").open(newline="") as fh:
        rows = {r["case"]: r for r in csv.DictReader(fh)}
    return run, rows, out, oblique


def _case_error(hostile_batch, case: str, *words: str) -> None:
    run, rows, out, _ = hostile_batch
    assert rows[case]["status"] == "error", rows[case]
    lines = [ln for ln in run.error_lines() if "error:" in ln and case in ln]
    assert len(lines) == 1 and all(w in lines[0] for w in words), (case, run.error_lines())
    assert not list(out.glob(f"{case}_*")), f"partial outputs of {case}"


def test_img_hostile_batch_finishes_the_good_cases(hostile_batch):
    run, rows, out, _ = hostile_batch
    assert_no_traceback(run)
    assert run.code == 1, run.err[-800:]
    assert sorted(c for c, r in rows.items() if r["status"] == "ok") == ["oblique", "ö t2"], rows
    assert leftovers(out) == []
    assert "WARNING: In " not in run.err, "ITK's multi-line warning reached the user"


def test_img_non_ascii_space_names_symlink_loop_and_a_scan_named_twice(hostile_batch):
    rows = hostile_batch[1]
    assert len(rows) == 7, sorted(rows)  # 8 inputs, the scan named twice counted once
    assert (hostile_batch[2] / "ö t2_zones.nii.gz").is_file()


def test_img_empty_folder(hostile_batch):
    _case_error(hostile_batch, "empty", "folder is empty")


def test_dicom_oblique_series_keeps_its_geometry(hostile_batch):
    from medcl.io.image import read_image

    _, rows, out, oblique = hostile_batch
    assert rows["oblique"]["status"] == "ok"
    zones = nib.load(out / "oblique_zones.nii.gz")
    scan = read_image(oblique)
    assert zones.shape == tuple(scan.shape[1:])
    np.testing.assert_allclose(zones.affine, np.asarray(scan.affine), atol=1e-3)
    normal = zones.affine[:3, 2] / np.linalg.norm(zones.affine[:3, 2])
    assert np.degrees(np.arccos(abs(normal[2]))) == pytest.approx(20.0, abs=0.01)  # the tilt survived


def test_dicom_symlink_loop_inside_a_series_folder(hostile_batch):
    assert hostile_batch[1]["oblique"]["status"] == "ok"  # the folder and oblique/again are one series


def test_dicom_sheared_series_is_refused(hostile_batch):
    _case_error(hostile_batch, "sheared", "sheared", "gantry")


def test_img_4d_given_where_3d_is_expected(hostile_batch):
    _case_error(hostile_batch, "four_d", "four_d.nii.gz", "--channel")


def test_img_nan_voxel_in_batch(hostile_batch):
    _case_error(hostile_batch, "nan", "nan.nii.gz", "NaN")


def test_img_truncated_nii_gz_in_batch(hostile_batch):
    _case_error(hostile_batch, "cut", "cut.nii.gz", "truncated")


def test_img_3d_given_where_a_4d_channel_is_asked(t2, zones_checkpoint, tmp_path):
    run = _segment([t2], zones_checkpoint, tmp_path / "out", "--channel", "1")
    assert "3D" in assert_user_error(run, "t2.nii.gz", "--channel 1")
    assert not list((tmp_path / "out").glob("t2_*"))
