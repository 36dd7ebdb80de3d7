"""SepCLR end to end through the CLI handlers: train / embed / evaluate / explain, SimCLR, errors, real scans."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medcl.cli.sepclr import register
from medcl.engine import load_model_checkpoint
from medcl.errors import MedclError

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[2]
TINY_2D = ["model.depth=10", "model.width=4", "model.cifar_stem=false", "data.batch_size=8", "train.max_steps=2",
           "train.accelerator=cpu", "train.precision=32-true", "train.loggers=[]", "eval.ig_steps=4"]  # fmt: skip


def _cli(*argv: str) -> int:
    """Parse like ``medcl sepclr ...`` and call the handler (MedclError propagates, as with --debug)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="group"))
    args = parser.parse_args(["sepclr", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def texdigits_run(tmp_path_factory):
    from medcl.data.synthetic.texdigits import write_dataset

    root = tmp_path_factory.mktemp("sepclr2d")
    manifest = write_dataset(root / "data", 24, seed=0)
    config = str(REPO / "configs" / "sepclr" / "texdigits.yaml")
    assert _cli("train", "--config", config, "--out", str(root / "run"), f"data.manifest={manifest}", *TINY_2D) == 0
    return root, manifest


def test_train_writes_a_medcl_checkpoint(texdigits_run):
    root, _ = texdigits_run
    ckpt = load_model_checkpoint(root / "run" / "checkpoints" / "last.ckpt", "sepclr")
    assert ckpt.config["model"]["width"] == 4 and ckpt.config["loss"]["preset"] == "natural"
    assert ckpt.label_map == {"background": 0, "target": 1}
    assert any(k.startswith("salient_encoder.") for k in ckpt.state_dict)
    assert (root / "run" / "config.yaml").is_file()


def test_embed_evaluate_explain(texdigits_run):
    root, manifest = texdigits_run
    ckpt = str(root / "run" / "checkpoints" / "last.ckpt")
    out = root / "out"
    assert _cli("embed", "--checkpoint", ckpt, "--manifest", str(manifest), "--out", str(out)) == 0
    table = pd.read_csv(out / "embeddings.csv")
    assert list(table.columns[:5]) == ["subject", "group", "texture", "digit", "split"]
    assert [c for c in table.columns if c.startswith("c_")] == [f"c_{i}" for i in range(32)]
    assert len(table) == 24 and np.isfinite(table.filter(regex=r"^[cs]_").to_numpy()).all()

    assert _cli("evaluate", "--embeddings", str(out / "embeddings.csv"), "--out", str(out)) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert set(result) >= {"probes", "bg_tg", "salient_norm"}
    assert set(result["bg_tg"]) == {"common", "salient"}
    assert set(result["salient_norm"]) == {"background", "target"}
    norms = np.linalg.norm(table.filter(regex=r"^s_").to_numpy(), axis=1)
    assert result["salient_norm"]["target"] == pytest.approx(norms[table.group == "target"].mean())
    assert result["protocol"] == "medcl" and result["bg_tg_features"] == "encoder"
    for row in result["probes"]:
        assert set(row) == {"attribute", "space", "metric", "score", "chance", "rows"}
        assert row["space"] in ("common", "salient") and row["metric"] == "balanced_accuracy"
    assert {(r["attribute"], r["rows"]) for r in result["probes"]} == {("texture", "all"), ("texture", "target"),
                                                                        ("digit", "target")}  # fmt: skip
    assert [c for c in table.columns if c.startswith("zs_")] == [f"zs_{i}" for i in range(32)]
    assert _cli("evaluate", "--embeddings", str(out / "embeddings.csv"), "--out", str(out / "paper"),
                "--protocol", "paper") == 0  # fmt: skip
    paper = json.loads((out / "paper" / "evaluation.json").read_text())
    assert paper["protocol"] == "paper" and {r["rows"] for r in paper["probes"]} == {"target"}
    assert {r["metric"] for r in paper["probes"]} == {"accuracy"}
    assert (out / "plots" / "pca_salient_group.png").is_file()
    assert (out / "plots" / "pca_common_texture.png").is_file()

    assert _cli("explain", "--checkpoint", ckpt, "--manifest", str(manifest), "--out", str(out / "ig")) == 0
    maps = sorted((out / "ig").glob("*.nii.gz"))
    assert len(maps) == (pd.read_csv(manifest).group == "target").sum()
    overlay = nib.load(maps[0]).get_fdata()
    assert overlay.shape == (32, 32) and np.abs(overlay).sum() > 0


def test_simclr_baseline(texdigits_run, tmp_path):
    root, manifest = texdigits_run
    config = str(REPO / "configs" / "sepclr" / "texdigits.yaml")
    run = tmp_path / "simclr"
    assert _cli("train", "--config", config, "--out", str(run), "--baseline", "simclr",
                f"data.manifest={manifest}", *TINY_2D) == 0  # fmt: skip
    _cli("embed", "--checkpoint", str(run / "checkpoints" / "last.ckpt"), "--manifest", str(manifest),
         "--out", str(run))  # fmt: skip
    table = pd.read_csv(run / "embeddings.csv")
    assert [c for c in table.columns if c.startswith("h_")] == [f"h_{i}" for i in range(64)]
    result = _cli("evaluate", "--embeddings", str(run / "embeddings.csv"), "--out", str(run))
    assert result == 0 and "simclr" in json.loads((run / "evaluation.json").read_text())["bg_tg"]


def test_bad_manifest_fails_before_training(tmp_path):
    image = np.random.default_rng(0).random((32, 32), np.float32)  # not blank: a constant image is refused
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "a.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,group\na.nii.gz,background\nmissing.nii.gz,target\n")
    with pytest.raises(MedclError, match=r"m.csv: row 2: image not found"):
        _cli("train", "--out", str(tmp_path / "run"), f"data.manifest={manifest}", *TINY_2D)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_wrong_override_is_a_config_error(tmp_path):
    with pytest.raises(MedclError, match="model.nope: unknown key"):
        _cli("train", "--out", str(tmp_path), "model.nope=3")


@pytest.fixture(scope="module")
def cohort_checkpoint(tmp_path_factory):
    from medcl.data.synthetic.cohort import write_dataset

    root = tmp_path_factory.mktemp("sepclr3d")
    manifest = write_dataset(root / "data", 8, seed=0, size=16)
    argv = ["--config", str(REPO / "configs" / "sepclr" / "cohort.yaml"), "--out", str(root / "run"),
            f"data.manifest={manifest}", "data.spatial_size=[16,16,16]", "model.width=4", "data.batch_size=4",
            "train.max_steps=1", "train.accelerator=cpu", "train.precision=32-true", "train.loggers=[]",
            "eval.ig_steps=2"]  # fmt: skip
    assert _cli("train", *argv) == 0
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_embed_and_explain_real_scans(shared_data, cohort_checkpoint, tmp_path):
    from medcl.io.image import read_image

    nrrd = shared_data / "mri" / "prostatex-nrrd" / "ProstateX-0217" / "t2_tse_tra.nrrd"
    label = shared_data / "mri" / "msd-prostate-labels" / "prostate_00.nii"
    manifest = tmp_path / "real.csv"
    manifest.write_text(f"path,group,subject\n{nrrd},target,px0217\n{label},background,msd00\n")
    _cli("embed", "--checkpoint", str(cohort_checkpoint), "--manifest", str(manifest), "--out", str(tmp_path))
    table = pd.read_csv(tmp_path / "embeddings.csv")
    assert table["subject"].tolist() == ["px0217", "msd00"]
    assert np.isfinite(table.filter(regex=r"^[cs]_").to_numpy()).all()

    _cli("explain", "--checkpoint", str(cohort_checkpoint), "--manifest", str(manifest), "--out", str(tmp_path / "ig"))
    overlay = nib.load(tmp_path / "ig" / "px0217_ig_salient.nii.gz")
    reference = read_image(nrrd)
    assert overlay.shape == tuple(reference.shape[1:])  # back on the 320x320x23 input grid
    np.testing.assert_allclose(overlay.affine, np.asarray(reference.affine), atol=1e-3)
    assert np.isfinite(overlay.get_fdata()).all()


def test_explain_skips_a_bad_scan_and_finishes_the_rest(cohort_checkpoint, tmp_path, capsys):
    from medcl.pipelines.sepclr import explain

    good = np.random.default_rng(0).random((20, 18, 16)).astype(np.float32)
    bad = good.copy()
    bad[3, 3, 3] = np.nan  # SITKReader rejects NaN voxels with a MedclError
    for name, data in (("good", good), ("bad", bad)):
        nib.save(nib.Nifti1Image(data, np.diag([1.2, 1.0, 1.5, 1.0])), tmp_path / f"{name}.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,group\nbad.nii.gz,target\ngood.nii.gz,target\n")
    paths = explain(cohort_checkpoint, manifest, tmp_path / "ig")
    assert [p.name for p in paths] == ["good_ig_salient.nii.gz"]
    assert nib.load(paths[0]).shape == good.shape
    err = capsys.readouterr().err
    assert "skipped" in err and "bad.nii.gz" in err and "NaN" in err
    with pytest.raises(MedclError, match=r"bad.nii.gz: contains 1 NaN/Inf voxels"):  # not a wrapped RuntimeError
        _cli("embed", "--checkpoint", str(cohort_checkpoint), "--manifest", str(manifest), "--out", str(tmp_path))
    assert not (tmp_path / "embeddings.csv").exists()
