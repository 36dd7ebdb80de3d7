"""Zones export: weights-only file and ONNX patch model against the PyTorch checkpoint, on a real scan.

The network is a tiny seeded random-weight dual-path net (its labels mean nothing; the tests
compare engines and formats, which must agree whatever the weights are).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medcl.errors import MedclError


def _scan(shared_data: Path) -> Path:
    path = shared_data / "mri" / "prostate158-sample" / "001" / "t2.nii.gz"
    if not path.is_file():
        pytest.skip("real Prostate158 scan not available")
    return path


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def files(tmp_path_factory, random_zones_checkpoint):
    """A random tiny dual-path checkpoint and its weights-only and ONNX exports."""
    from medcl.pipelines.export import export

    tmp = tmp_path_factory.mktemp("zones-export")
    ckpt = random_zones_checkpoint(tmp / "tiny.ckpt", "dualpath")
    weights = export(ckpt, "weights", tmp / "weights")
    onnx = export(ckpt, "onnx", tmp / "onnx")
    return ckpt, weights, onnx


def test_weights_file_is_pickle_free_and_gives_identical_outputs(files):
    from safetensors import safe_open

    from medcl.engine import load_model_checkpoint, load_state_into
    from medcl.nets.dualpath import build_zones_net

    ckpt, weights, _ = files
    with safe_open(str(weights), framework="pt") as fh:  # a plain safetensors file: tensors + JSON header
        card = json.loads(fh.metadata()["medcl"])
    assert card["family"] == "zones" and card["config"]["model"]["filters"] == [4, 8, 8, 8]
    assert "synthetic" in card["training_data"]
    assert json.loads((weights.parent / "config.json").read_text())["weights_sha256"] == card["weights_sha256"]
    nets = [load_state_into(build_zones_net({"arch": "dualpath", "filters": [4, 8, 8, 8]}),
                            load_model_checkpoint(p, "zones")).eval() for p in (ckpt, weights)]
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        a, b = (net.zone_probabilities(x)[0] for net in nets)
    assert torch.equal(a, b)


def test_onnx_patch_matches_pytorch(files):
    from medcl.engine import load_model_checkpoint, load_state_into
    from medcl.export.onnx import OnnxModel
    from medcl.nets.dualpath import build_zones_net

    ckpt, _, onnx = files
    net = load_state_into(build_zones_net({"arch": "dualpath", "filters": [4, 8, 8, 8]}),
                          load_model_checkpoint(ckpt, "zones")).eval()
    model = OnnxModel(onnx.parent, "zones")
    assert model.card["divisor"] == [8, 8, 2] and model.card["channels"][-1] == "uncertainty"
    torch.manual_seed(1)
    x = torch.randn(3, 1, 48, 40, 14)  # batch and patch size differ from the export example
    with torch.no_grad():
        probs, unc = net.zone_probabilities(x)
    out = model(x)[0]
    assert out.shape == (3, 6, 48, 40, 14)
    diff = np.abs(out - torch.cat([probs, unc], 1).numpy()).max()
    assert diff < 1e-4, diff
    np.testing.assert_allclose(out[:, :5].sum(1), 1.0, atol=1e-5)


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return 2.0 * float((x & y).sum()) / max(float(x.sum() + y.sum()), 1.0)


def test_segment_with_weights_and_onnxruntime_agree_with_checkpoint(files, shared_data, tmp_path):
    from medcl.cli import main

    ckpt, weights, onnx = files
    scan = _scan(shared_data)
    runs = {"ckpt": ["--checkpoint", str(ckpt)], "weights": ["--checkpoint", str(weights)],
            "onnx": ["--checkpoint", str(onnx.parent), "--engine", "onnxruntime"]}
    for name, args in runs.items():
        assert main(["zones", "segment", str(scan), "--out", str(tmp_path / name), "--device", "cpu", *args]) == 0
    ref = _labels(tmp_path / "ckpt" / "t2_zones.nii.gz")
    assert np.array_equal(_labels(tmp_path / "weights" / "t2_zones.nii.gz"), ref)
    got = _labels(tmp_path / "onnx" / "t2_zones.nii.gz")
    assert got.shape == ref.shape and ref.any()
    for zone in np.unique(ref[ref > 0]):
        assert _dice(got, ref, int(zone)) >= 0.98, zone
    unc_t = _labels(tmp_path / "ckpt" / "t2_uncertainty.nii.gz")
    unc_o = _labels(tmp_path / "onnx" / "t2_uncertainty.nii.gz")
    assert np.abs(unc_t - unc_o).max() < 1e-4


def test_wrong_family_and_tampered_files_are_one_line_errors(files, tmp_path):
    import shutil

    from medcl.engine import load_model_checkpoint
    from medcl.export.onnx import OnnxModel

    _, weights, onnx = files
    with pytest.raises(MedclError, match="family 'zones', expected 'ecg'"):
        load_model_checkpoint(weights, "ecg")
    with pytest.raises(MedclError, match="family 'zones', expected 'ecg'"):
        OnnxModel(onnx.parent, "ecg")
    bad = tmp_path / "bad"
    shutil.copytree(weights.parent, bad / "w")
    shutil.copytree(onnx.parent, bad / "o")
    blob = bytearray((bad / "w" / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF  # one flipped byte in the last tensor
    (bad / "w" / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(MedclError, match="SHA-256") as err:
        load_model_checkpoint(bad / "w", "zones")
    assert "\n" not in str(err.value)
    (bad / "w" / "model.safetensors").write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(MedclError, match="model.safetensors: "):
        load_model_checkpoint(bad / "w" / "model.safetensors", "zones")
    onnx_bytes = bytearray((bad / "o" / "model.onnx").read_bytes())
    onnx_bytes[-10] ^= 0xFF
    (bad / "o" / "model.onnx").write_bytes(bytes(onnx_bytes))
    with pytest.raises(MedclError, match="SHA-256"):
        OnnxModel(bad / "o", "zones")


def test_cli_export_and_info(files, tmp_path, capsys):
    from medcl.cli import main

    ckpt, weights, onnx = files
    assert main(["info", str(weights), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "zones"
    assert main(["info", str(onnx.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input"] == "image"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "x"), "--exporter", "legacy"]) == 0
    capsys.readouterr()
    assert (tmp_path / "x" / "model.onnx").is_file()
    # a weights file where an ONNX folder is needed: one line, exit 2
    assert main(["zones", "segment", str(ckpt), "--out", str(tmp_path / "y"), "--checkpoint", str(weights.parent / "x"),
                 "--engine", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a medcl ONNX export" in err[0]


def test_bench_helper_compares_the_same_outputs(files):
    from medcl.engine import load_model_checkpoint, load_state_into
    from medcl.export.onnx import ZonesPatchModel
    from medcl.nets.dualpath import build_zones_net
    from medcl.pipelines.bench.engines import onnx_vs_eager

    ckpt, _, _ = files
    net = load_state_into(build_zones_net({"arch": "dualpath", "filters": [4, 8, 8, 8]}),
                          load_model_checkpoint(ckpt, "zones"))
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    res = onnx_vs_eager(ZonesPatchModel(net), torch.rand(2, 1, 16, 16, 4), "zones", "image", ["probabilities"],
                        {"image": axes}, threads=1, repeats=1)
    assert res["batch"] == 2 and res["max_abs_diff"] < 1e-4
    assert res["onnxruntime_items_per_s"] == pytest.approx(2 / res["onnxruntime_s"], rel=0.01)


def test_segment_onnxruntime_follows_device(files, shared_data, tmp_path, capsys):
    """``--device`` reaches onnxruntime too: CUDA asked for on a build without its provider is a
    one-line error (exit 2) and no output file, instead of a silent run on whatever is available."""
    import onnxruntime as ort

    from medcl.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has a CUDA provider")
    _, _, onnx = files
    out = tmp_path / "seg"
    assert main(["zones", "segment", str(_scan(shared_data)), "--out", str(out), "--checkpoint", str(onnx.parent),
                 "--engine", "onnxruntime", "--device", "cuda:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medcl: error: --device cuda:1: onnxruntime has no CUDA provider") and err.count("\n") == 1, err
    assert not out.exists() or not any(p.name.endswith(".nii.gz") for p in out.rglob("*"))
