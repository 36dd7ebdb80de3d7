"""Corpus: configs, SepCLR manifests, zones datalists and checkpoints (hostile, corrupt, wrong family)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, assert_user_error, crop_real_t2, run_cli, write_nifti

P158 = Path("mri/prostate158-sample")
TINY_ZONES = ["train.max_epochs=1", "train.accelerator=cpu", "train.loggers=[]", "stage2.epochs=0",
              "data.patch_size=[32,32,8]", "data.batch_size=1", "data.samples_per_volume=1",
              "model.filters=[4,8,8]", "data.synthetic_cases=0", "data.synthetic_unlabeled=0"]
BANNER = ("GPU available", "| Name", "Epoch 0")


def _no_training_started(run) -> None:
    text = run.out + run.err
    assert not any(b in text for b in BANNER), f"training started before the check: {text[-600:]}"


# ----------------------------------------------------------------------------------------- configs


def test_cfg_unknown_key(tmp_path):
    assert_user_error(run_cli("zones", "train", "--out", tmp_path / "r", "trian.max_epochs=1"), "trian")


def test_cfg_wrong_type(tmp_path):
    assert_user_error(run_cli("zones", "train", "--out", tmp_path / "r", "train.max_epochs=many"), "train.max_epochs")


def test_cfg_negative_epochs(tmp_path):
    assert_user_error(run_cli("ecg", "train", "--out", tmp_path / "r", "train.max_epochs=-1"), "train.max_epochs")


def test_cfg_zero_batch_size(tmp_path):
    assert_user_error(run_cli("sepclr", "train", "--out", tmp_path / "r", "data.batch_size=0"), "data.batch_size")


def test_cfg_yaml_syntax_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {max_epochs: [1, 2\n")
    assert_user_error(run_cli("zones", "train", "--config", bad, "--out", tmp_path / "r"), "bad.yaml")


def test_cfg_missing_file(tmp_path):
    assert_user_error(run_cli("ecg", "train", "--config", tmp_path / "none.yaml", "--out", tmp_path / "r"), "none.yaml")


def test_cfg_validate_bad_value(tmp_path):
    bad = tmp_path / "z.yaml"
    bad.write_text((REPO / "configs" / "zones" / "synthetic.yaml").read_text() + "\nextra_key: 1\n")
    assert_user_error(run_cli("config", "validate", "zones", bad), "extra_key")


def test_cfg_ecg_empty_stages(tmp_path):
    assert_user_error(run_cli("ecg", "train", "--out", tmp_path / "r", "--stages", ","), "--stages")


def test_cfg_train_out_below_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    run = run_cli("zones", "train", "--config", REPO / "configs/zones/synthetic.yaml", "--out", tmp_path / "f" / "r",
                  *TINY_ZONES[:-2])
    assert_user_error(run, "f")
    _no_training_started(run)


def test_cfg_typo_in_a_nested_mapping_key(tmp_path):
    """A misspelt key three levels down (``model.per_class.rythm``) is named in full, with the allowed keys."""
    bad = tmp_path / "ecg.yaml"
    bad.write_text((REPO / "configs" / "ecg" / "tiny.yaml").read_text().replace("{rhythm: 2,", "{rythm: 2,"))
    line = assert_user_error(run_cli("config", "validate", "ecg", bad), "ecg.yaml", "model.per_class.rythm")
    assert "unknown key" in line and "rhythm" in line and "[key]" not in line


def test_cfg_typo_in_a_nested_section_key(tmp_path):
    bad = tmp_path / "z.yaml"
    bad.write_text((REPO / "configs" / "zones" / "synthetic.yaml").read_text()
                   .replace("  lr: 0.003", "  lr: 0.003\n  rampup_epochz: 3"))
    assert "unknown key" in assert_user_error(run_cli("config", "validate", "zones", bad), "stage2.rampup_epochz")


# ----------------------------------------------------------------------------------------- manifests


def _manifest(tmp_path: Path, rows: list[str], header: str = "path,group") -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def scans(real, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    for i, case in enumerate(("001", "002", "020")):
        crop_real_t2(real, folder, f"s{i}.nii.gz", case)
    return folder


def _sepclr_train(manifest: Path, out: Path):
    return run_cli("sepclr", "train", "--config", REPO / "configs/sepclr/cohort.yaml", "--out", out,
                   f"data.manifest={manifest}", "train.max_steps=1", "train.accelerator=cpu", "train.loggers=[]")


def test_man_missing_path_column(scans, tmp_path):
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target"], header="file,group")
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "manifest.csv", "path")
    _no_training_started(run)


def test_man_missing_image_row(scans, tmp_path):
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{scans}/gone.nii.gz,background"])
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "manifest.csv", "row 2", "gone.nii.gz")
    _no_training_started(run)


def test_man_empty(tmp_path):
    assert_user_error(_sepclr_train(_manifest(tmp_path, []), tmp_path / "r"), "manifest.csv")


def test_man_unknown_group(scans, tmp_path):
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{scans}/s1.nii.gz,patients"])
    assert_user_error(_sepclr_train(m, tmp_path / "r"), "manifest.csv", "patients")


def test_man_not_an_image(scans, tmp_path):
    (tmp_path / "notes.nii.gz").write_text("not an image")
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{tmp_path}/notes.nii.gz,background"])
    assert_user_error(_sepclr_train(m, tmp_path / "r"), "manifest.csv", "notes.nii.gz")


def test_man_zero_spacing_row(scans, tmp_path):
    bad = write_nifti(tmp_path / "zero.nii.gz", np.asarray(nib.load(scans / "s0.nii.gz").dataobj), pixdim=(0, 0, 0))
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{bad},background"])
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "zero.nii.gz", "spacing")
    _no_training_started(run)


def test_man_constant_image_row(scans, tmp_path):
    blank = write_nifti(tmp_path / "blank.nii.gz", np.full((96, 96, 12), 7.0, np.float32))
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{blank},background"])
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "blank.nii.gz", "constant")
    _no_training_started(run)


def test_man_repeated_image(scans, tmp_path):
    """The same scan as a target and (spelt another way) as a background subject."""
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{scans}/s1.nii.gz,background",
                             f"{scans}/../{scans.name}/s0.nii.gz,background"])
    run = _sepclr_train(m, tmp_path / "r")
    line = assert_user_error(run, "manifest.csv", "row 3", "s0.nii.gz", "row 1")
    assert "repeats" in line
    _no_training_started(run)


def test_man_missing_group_column(scans, tmp_path):
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz", f"{scans}/s1.nii.gz"], header="path")
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "manifest.csv", "group")
    _no_training_started(run)


def test_man_4d_image_row(scans, tmp_path):
    img = nib.load(scans / "s0.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)
    four = write_nifti(tmp_path / "four.nii.gz", np.stack([data, data], -1), img.affine)
    m = _manifest(tmp_path, [f"{scans}/s1.nii.gz,target", f"{four},background"])
    run = _sepclr_train(m, tmp_path / "r")
    assert_user_error(run, "four.nii.gz", "channel")
    _no_training_started(run)


# ----------------------------------------------------------------------------------------- datalists


def _datalist(tmp_path: Path, training: list[dict], validation: list[dict] = ()) -> Path:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"name": "corpus", "training": training, "validation": list(validation)}))
    return path


def _zones_train(datalist: Path, out: Path):
    return run_cli("zones", "train", "--config", REPO / "configs/zones/synthetic.yaml", "--out", out,
                   f"data.datalist={datalist}", *TINY_ZONES)


def _real_pair(real: Path, case: str) -> dict:
    return {"image": str(real / P158 / case / "t2.nii.gz"), "label": str(real / P158 / case / "t2_anatomy_reader1.nii.gz")}


def test_dl_label_on_another_grid(real, tmp_path):
    pair = {"image": str(real / P158 / "001" / "t2.nii.gz"), "label": str(real / P158 / "020" / "t2_anatomy_reader1.nii.gz")}
    run = _zones_train(_datalist(tmp_path, [pair, _real_pair(real, "002")]), tmp_path / "r")
    assert_user_error(run, "020", "grid")
    _no_training_started(run)


def test_dl_label_values_outside_the_declared_set(real, tmp_path):
    label = nib.load(real / P158 / "002" / "t2_anatomy_reader1.nii.gz")
    data = np.asarray(label.dataobj).astype(np.uint8)
    data[data == 2] = 7
    bad = tmp_path / "lab7.nii.gz"
    nib.save(nib.Nifti1Image(data, label.affine, label.header), str(bad))
    pair = {"image": str(real / P158 / "002" / "t2.nii.gz"), "label": str(bad)}
    run = _zones_train(_datalist(tmp_path, [_real_pair(real, "001"), pair]), tmp_path / "r")
    assert_user_error(run, "lab7.nii.gz", "7")
    _no_training_started(run)


def test_dl_missing_image(real, tmp_path):
    pair = {"image": str(tmp_path / "gone.nii.gz"), "label": str(real / P158 / "001" / "t2_anatomy_reader1.nii.gz")}
    run = _zones_train(_datalist(tmp_path, [_real_pair(real, "002"), pair]), tmp_path / "r")
    assert_user_error(run, "gone.nii.gz")
    _no_training_started(run)


def test_dl_malformed_json(tmp_path):
    bad = tmp_path / "datalist.json"
    bad.write_text('{"training": [')
    assert_user_error(_zones_train(bad, tmp_path / "r"), "datalist.json")


def test_dl_empty_training_list(tmp_path):
    run = _zones_train(_datalist(tmp_path, []), tmp_path / "r")
    assert_user_error(run, "datalist.json", "training")
    _no_training_started(run)


def test_dl_constant_image(real, tmp_path):
    ref = nib.load(real / P158 / "001" / "t2.nii.gz")
    blank = write_nifti(tmp_path / "blank.nii.gz", np.full(ref.shape, 5.0, np.float32), ref.affine)
    pair = {"image": str(blank), "label": str(real / P158 / "001" / "t2_anatomy_reader1.nii.gz")}
    run = _zones_train(_datalist(tmp_path, [_real_pair(real, "002"), pair]), tmp_path / "r")
    assert_user_error(run, "blank.nii.gz", "constant")
    _no_training_started(run)


def test_dl_zero_spacing_label(real, tmp_path):
    label = nib.load(real / P158 / "001" / "t2_anatomy_reader1.nii.gz")
    bad = write_nifti(tmp_path / "lab0.nii.gz", np.asarray(label.dataobj).astype(np.uint8), pixdim=(0, 0, 0))
    pair = {"image": str(real / P158 / "001" / "t2.nii.gz"), "label": str(bad)}
    run = _zones_train(_datalist(tmp_path, [_real_pair(real, "002"), pair]), tmp_path / "r")
    assert_user_error(run, "lab0.nii.gz")
    _no_training_started(run)


def _reader2(real: Path, case: str) -> dict:
    return {"image": str(real / P158 / case / "t2.nii.gz"), "label": str(real / P158 / case / "t2_anatomy_reader2.nii.gz")}


def test_dl_repeated_pair(real, tmp_path):
    """A second reader's label of one image is a new pair; the same (image, label) pair twice is refused."""
    training = [_real_pair(real, "001"), _reader2(real, "001"), _real_pair(real, "002"), _real_pair(real, "002")]
    run = _zones_train(_datalist(tmp_path, training), tmp_path / "r")
    line = assert_user_error(run, "datalist.json", "training[3]", "training[2]", "002")
    assert "repeats" in line
    _no_training_started(run)


def test_dl_validation_case_is_a_training_case(real, tmp_path):
    training = [_real_pair(real, "001"), _real_pair(real, "002")]
    run = _zones_train(_datalist(tmp_path, training, [_reader2(real, "002")]), tmp_path / "r")
    assert_user_error(run, "datalist.json", "validation[0]", "training[1]", "002")
    _no_training_started(run)


# ----------------------------------------------------------------------------------------- checkpoints


def _hostile_line(run) -> None:
    line = assert_user_error(run, "hostile.ckpt", "refused")
    assert "weights_only" not in line and "will likely succeed" not in run.err
    assert "posix.system" in line or "os.system" in line


def test_ckpt_hostile_zones_segment(hostile_checkpoint, real, tmp_path):
    img = crop_real_t2(real, tmp_path)
    _hostile_line(run_cli("zones", "segment", img, "--checkpoint", hostile_checkpoint, "--out", tmp_path / "o"))


def test_ckpt_hostile_ecg_predict(hostile_checkpoint, real):
    _hostile_line(run_cli("ecg", "predict", real / "ecg/cinc2021-sample/HR06000.hea", "--checkpoint", hostile_checkpoint))


def test_ckpt_hostile_ecg_report(hostile_checkpoint, real, tmp_path):
    _hostile_line(run_cli("ecg", "report", real / "ecg/cinc2021-sample/HR06000.hea", "--checkpoint",
                          hostile_checkpoint, "--out", tmp_path / "rep"))


def test_ckpt_hostile_zones_train_resume(hostile_checkpoint, tmp_path):
    run = run_cli("zones", "train", "--config", REPO / "configs/zones/synthetic.yaml", "--out", tmp_path / "r",
                  "--resume", hostile_checkpoint, *TINY_ZONES[:-2])
    _hostile_line(run)
    _no_training_started(run)


def test_ckpt_hostile_info(hostile_checkpoint):
    _hostile_line(run_cli("info", hostile_checkpoint))


def test_ckpt_hostile_export(hostile_checkpoint, tmp_path):
    _hostile_line(run_cli("export", hostile_checkpoint, "--format", "weights", "--out", tmp_path / "e"))


def test_ckpt_hostile_sepclr_embed(hostile_checkpoint, scans, tmp_path):
    m = _manifest(tmp_path, [f"{scans}/s0.nii.gz,target", f"{scans}/s1.nii.gz,background"])
    _hostile_line(run_cli("sepclr", "embed", "--checkpoint", hostile_checkpoint, "--manifest", m, "--out", tmp_path / "o"))


def test_ckpt_truncated(zones_checkpoint, real, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(zones_checkpoint.read_bytes()[: zones_checkpoint.stat().st_size // 2])
    img = crop_real_t2(real, tmp_path)
    assert_user_error(run_cli("zones", "segment", img, "--checkpoint", cut, "--out", tmp_path / "o"), "cut.ckpt")


def test_ckpt_wrong_family(ecg_checkpoint, real, tmp_path):
    img = crop_real_t2(real, tmp_path)
    run = run_cli("zones", "segment", img, "--checkpoint", ecg_checkpoint, "--out", tmp_path / "o")
    assert_user_error(run, "ecg.ckpt", "family")


def test_ckpt_missing(real, tmp_path):
    assert_user_error(run_cli("ecg", "predict", real / "ecg/cinc2021-sample/HR06000.hea", "--checkpoint",
                              tmp_path / "none.ckpt"), "none.ckpt")


def test_ckpt_zip_with_foreign_member(zones_checkpoint, real, tmp_path):
    bad = tmp_path / "odd.ckpt"
    shutil.copy(zones_checkpoint, bad)
    with zipfile.ZipFile(bad, "a") as z:
        z.writestr("extra/evil.py", "import os")
    img = crop_real_t2(real, tmp_path)
    run = run_cli("zones", "segment", img, "--checkpoint", bad, "--out", tmp_path / "o", "--no-tta", "--roi", "center")
    assert run.code in (0, 2) and not run.exc and "Traceback" not in run.err
