"""``medcl data datalist`` on the real Prostate158 sample and on tiny files in the other layouts.

Label remaps are checked against the raw files read with SimpleITK/nibabel; bad inputs (values
outside the declared set, grids that differ, channel index out of range) give one line naming the
file while the other cases are written; a 4D MSD-style data set trains with ``--channel``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medcl.cli import main
from medcl.data.datalist import read_datalist
from medcl.io.image import read_image
from medcl.transforms.zones import RemapLabelsd

SHAPE = (16, 16, 6)  # x, y, z


def _write(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 3.0), nibabel: bool = False) -> Path:
    """Write an (x, y, z) array with SimpleITK, or with nibabel (4D (x, y, z, c) NIfTI as MSD ships them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if nibabel or array.ndim == 4:
        nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)
        return path
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.T))
    image.SetSpacing(tuple(spacing))
    sitk.WriteImage(image, str(path))
    return path


def _label(values=(1, 2)) -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[4:12, 4:8, 1:5] = values[0]
    lab[4:12, 8:12, 1:5] = values[1]
    return lab


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 10, SHAPE).astype(np.float32)


def _datalist(root: Path, layout: str, out: Path, *extra: str) -> int:
    return main(["data", "datalist", str(root), "--layout", layout, "--out", str(out), *extra])


def test_prostate158_sample_folds_and_declared_remap(shared_data, tmp_path):
    root = shared_data / "mri" / "prostate158-sample"
    seen = []
    for fold in range(3):
        out = tmp_path / f"fold{fold}.json"
        assert _datalist(root, "prostate158", out, "--folds", "3", "--fold", str(fold)) == 0
        val = read_datalist(out, "validation", ("image", "label"))
        train = read_datalist(out, "training", ("image", "label"))
        assert len(val) == 1 and len(train) == 2
        assert {i["case"] for i in val} | {i["case"] for i in train} == {"001", "002", "020"}
        seen += [i["case"] for i in val]
    assert sorted(seen) == ["001", "002", "020"]  # every case validates exactly once
    item = val[0]
    assert item["zones"] == ["PZ", "TZ"] and item["zone_remap"] == {"0": 0, "1": 2, "2": 1}
    raw = np.asarray(nib.load(item["label"]).dataobj)
    out = RemapLabelsd("label")({"label": read_image(item["label"], dtype=None), "zone_remap": item["zone_remap"]})
    zones = out["label"][0].numpy()
    assert (zones == 1).sum() == (raw == 2).sum() > 0  # Prostate158: 2 = PZ
    assert (zones == 2).sum() == (raw == 1).sum() > 0  # 1 = TZ / central gland


def test_nnunet_layout_reads_label_names(tmp_path):
    root = tmp_path / "Dataset042_Prostate"
    (root / "imagesTr").mkdir(parents=True)
    for case in ("p_001", "p_002"):
        _write(root / "imagesTr" / f"{case}_0000.nii.gz", _image())
        _write(root / "labelsTr" / f"{case}.nii.gz", _label((1, 2)))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": {"background": 0, "TZ": 1, "PZ": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    out = tmp_path / "nn.json"
    assert _datalist(root, "nnunet", out, "--folds", "2") == 0
    items = read_datalist(out, "training") + read_datalist(out, "validation")
    assert {i["case"] for i in items} == {"p_001", "p_002"}
    assert items[0]["zone_remap"] == {"0": 0, "1": 2, "2": 1}


def _msd(root: Path, n: int = 3, label_values=(1, 2)) -> Path:
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    training = []
    for i in range(n):
        t2, adc = _image(i), _image(i + 10) * 0.01
        _write(root / "imagesTr" / f"prostate_{i:02d}.nii.gz", np.stack([t2, adc], axis=-1))
        _write(root / "labelsTr" / f"prostate_{i:02d}.nii.gz", _label(label_values), nibabel=True)
        training.append({"image": f"./imagesTr/prostate_{i:02d}.nii", "label": f"./labelsTr/prostate_{i:02d}.nii"})
    (root / "dataset.json").write_text(json.dumps({
        "name": "PROSTATE", "modality": {"0": "T2", "1": "ADC"}, "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "training": training}))
    return root


def test_msd_4d_needs_a_valid_channel_and_reads_it(tmp_path, capsys):
    root = _msd(tmp_path / "Task05_Prostate")
    assert _datalist(root, "msd", tmp_path / "none.json") == 2  # every case 4D without --channel: nothing usable
    err = capsys.readouterr().err
    assert "prostate_00.nii.gz: is 4D with 2 channels" in err
    assert _datalist(root, "msd", tmp_path / "bad.json", "--channel", "2") == 2
    assert "--channel 2 is out of range" in capsys.readouterr().err
    out = tmp_path / "msd.json"
    assert _datalist(root, "msd", out, "--channel", "1", "--folds", "3") == 0
    item = read_datalist(out, "training")[0]
    assert item["channel"] == 1 and item["zone_remap"] == {"0": 0, "1": 1, "2": 2}
    adc = read_image(item["image"], channel=1)
    raw = np.asarray(nib.load(item["image"]).dataobj)[..., 1]
    assert adc.shape == (1, *SHAPE) and np.allclose(adc[0].numpy(), raw)


def test_bad_values_and_grid_mismatch_are_one_line_each_and_the_rest_finish(tmp_path, capsys):
    root = tmp_path / "plain"
    for case in ("good", "values", "grid"):
        _write(root / "images" / f"{case}.nii.gz", _image())
    _write(root / "labels" / "good.nii.gz", _label((1, 2)))
    _write(root / "labels" / "values.nii.gz", _label((1, 9)))
    _write(root / "labels" / "grid.nii.gz", _label((1, 2)), spacing=(1.0, 1.0, 2.5))
    out = tmp_path / "plain.json"
    assert _datalist(root, "folder", out, "--folds", "1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "values.nii.gz: label values [9] outside the declared set [0, 1, 2, 3, 4]" in err[1] + err[0]
    assert any("grid.nii.gz: label grid spacing" in line for line in err)
    doc = json.loads(out.read_text())
    assert [i["case"] for i in doc["training"]] == ["good"] and len(doc["errors"]) == 2


def test_prostatex_zone_masks_are_combined_and_picai_labels_found(tmp_path):
    case = tmp_path / "prostatex" / "ProstateX-0001"
    _write(case / "t2.nii.gz", _image())
    lab = _label((1, 2))
    _write(case / "mask_pz.nii.gz", (lab == 1).astype(np.uint8))
    _write(case / "mask_tz.nii.gz", (lab == 2).astype(np.uint8))
    out = tmp_path / "px" / "px.json"
    assert _datalist(tmp_path / "prostatex", "prostatex", out, "--folds", "1") == 0
    item = read_datalist(out, "training", ("image", "label"))[0]
    combined = sitk.GetArrayFromImage(sitk.ReadImage(item["label"])).T
    assert (combined == lab).all() and item["zones"] == ["PZ", "TZ"]
    picai = tmp_path / "picai"
    _write(picai / "images" / "10000" / "10000_1000000_t2w.mha", _image())
    _write(picai / "labels" / "10000_1000000.nii.gz", _label((1, 2)))
    out = tmp_path / "picai.json"
    assert _datalist(picai / "images", "picai", out, "--labels", str(picai / "labels"), "--folds", "1") == 0
    assert read_datalist(out, "training", ("image", "label"))[0]["case"] == "10000_1000000"


@pytest.mark.slow
def test_msd_4d_channel_datalist_trains(tmp_path):
    torch.set_num_threads(1)
    root = _msd(tmp_path / "Task05_Prostate", n=3)
    out = tmp_path / "msd.json"
    assert _datalist(root, "msd", out, "--channel", "0", "--folds", "3") == 0
    args = ["zones", "train", "--out", str(tmp_path / "run"), f"data.datalist={out}", "train.max_epochs=1",
            "train.progress_bar=false", "stage2.epochs=0", "data.pixdim=[1.0,1.0,3.0]", "data.patch_size=[16,16,4]",
            "data.cache=none", "model.filters=[4,8,8]", "model.kernel_sizes=[[3,3,1],[3,3,1],[3,3,3]]",
            "model.strides=[[1,1,1],[2,2,1],[2,2,2]]"]
    assert main(args) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "stage1" / "best.ckpt"
    card = torch.load(ckpt, weights_only=True)["medcl"]["extra"]["model_card"]
    assert card["training_data"] == [{"name": "msd:Task05_Prostate", "cases": 2, "annotated": ["PZ", "TZ"],
                                      "synthetic": False}]
    assert not card["synthetic_only"] and card["n_validation_cases"] == 1
    assert "val/dice_PZ" in card["validation"] and card["validation"]["val/dice_DPU"] is None
    assert "DPU, AFS" in card["limitations"]


def test_two_channels_of_a_4d_image_read_as_input_channels_and_a_3d_label_once(tmp_path):
    root = _msd(tmp_path / "Task05_Prostate", n=1)
    image, label = root / "imagesTr" / "prostate_00.nii.gz", root / "labelsTr" / "prostate_00.nii.gz"
    both = read_image(image, channel=[0, 1])
    raw = np.asarray(nib.load(image).dataobj)
    assert both.shape == (2, *SHAPE) and np.allclose(both.numpy(), np.moveaxis(raw, -1, 0))
    from medcl.transforms.geometry import load_canonical

    item = load_canonical(["image", "label"], pixdim=None, mode=["bilinear", "nearest"], channel=[0, 1])(
        {"image": str(image), "label": str(label)})
    assert item["image"].shape[0] == 2 and item["label"].shape[0] == 1


@pytest.mark.slow
def test_msd_t2_plus_adc_trains_and_segments_with_the_trained_channels(tmp_path, capsys):
    torch.set_num_threads(1)
    root = _msd(tmp_path / "Task05_Prostate", n=3)
    out = tmp_path / "msd.json"
    assert _datalist(root, "msd", out, "--channel", "0,1", "--folds", "3") == 0
    assert read_datalist(out, "training")[0]["channel"] == [0, 1]
    args = ["zones", "train", "--out", str(tmp_path / "run"), f"data.datalist={out}", "train.max_epochs=1",
            "train.progress_bar=false", "stage2.epochs=0", "data.pixdim=[1.0,1.0,3.0]", "data.patch_size=[16,16,4]",
            "data.cache=none", "data.channel=[0,1]", "model.in_channels=2", "model.filters=[4,8,8]",
            "model.kernel_sizes=[[3,3,1],[3,3,1],[3,3,3]]", "model.strides=[[1,1,1],[2,2,1],[2,2,2]]"]
    assert main(args) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "stage1" / "best.ckpt"
    seg = tmp_path / "seg"
    assert main(["zones", "segment", str(root / "imagesTr"), "--checkpoint", str(ckpt), "--out", str(seg),
                 "--no-tta", "--device", "cpu"]) == 0  # the folder expands to its 3 files
    zones = nib.load(seg / "prostate_00_zones.nii.gz")
    assert zones.shape == SHAPE
    assert main(["zones", "segment", str(root / "imagesTr" / "prostate_01.nii.gz"), "--channel", "5",
                 "--checkpoint", str(ckpt), "--out", str(tmp_path / "bad"), "--device", "cpu"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("medcl: error")]
    assert len(errors) == 1 and "prostate_01.nii.gz: channel 5 is out of range" in errors[0]


def test_prostatex_nrrd_label_map_needs_and_uses_a_declared_remap(tmp_path, capsys):
    case = tmp_path / "px" / "ProstateX-0002"
    _write(case / "t2.nrrd", _image())
    _write(case / "Seg-0002.nrrd", _label((5, 6)))
    assert _datalist(tmp_path / "px", "prostatex", tmp_path / "a.json") == 2
    assert "Seg-0002.nrrd: an NRRD zone label map needs --remap" in capsys.readouterr().err
    assert _datalist(tmp_path / "px", "prostatex", tmp_path / "b.json", "--remap", "5:1,6:2", "--folds", "1") == 0
    assert read_datalist(tmp_path / "b.json", "training")[0]["zone_remap"] == {"0": 0, "5": 1, "6": 2}


def test_segment_picks_a_series_of_a_real_study_folder_and_reports_an_unknown_one(shared_data, tmp_path, capsys):
    from test_zones_segment import IntensityOracle

    from medcl.pipelines.zones_segment import ZonesSegmenter, segment

    study = shared_data / "mri" / "prostatex-dicom" / "ProstateX-0000" / "07-07-2011"
    seg = ZonesSegmenter(net=IntensityOracle(), tta=False, roi_mm=(32.0, 32.0, 24.0))
    rows = segment([study], seg, tmp_path / "ok", series="t2_tse_tra")
    assert rows[0]["status"] == "ok", rows[0]["error"]
    assert nib.load(tmp_path / "ok" / "07-07-2011_zones.nii.gz").shape == (384, 384, 19)
    rows = segment([study], seg, tmp_path / "bad", series="t2_haste")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("medcl: error")]
    assert rows[0]["status"] == "error" and len(err) == 1 and "no DICOM series matches 't2_haste'" in err[0]
