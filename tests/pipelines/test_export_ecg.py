"""ProtoECGNet export: weights-only file and ONNX (onnxruntime) against the PyTorch checkpoint on real records.

The network is the tiny config with seeded random weights and hand-made projection provenance:
the tests compare formats and engines, which must agree whatever the weights are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medcl.errors import MedclError

REPO = Path(__file__).resolve().parents[2]


def _records(shared_data: Path) -> list[str]:
    folder = shared_data / "ecg" / "cinc2021-sample"
    recs = sorted(str(p.with_suffix("")) for p in folder.glob("HR0600*.hea"))[:6]
    if len(recs) < 6:
        pytest.skip("real CinC 2021 records not available")
    return recs


def _tiny_checkpoint(path: Path) -> Path:
    from medcl.config import load_config
    from medcl.data.ptbxl import packaged_statements
    from medcl.nets.protoecg import BRANCHES
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups, save_model

    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml", [])
    labels = sorted(packaged_statements()["code"])
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels))
    projection = {}
    for b in BRANCHES:
        n = net.branches[b].prototypes.num_prototypes
        sample = torch.arange(n) - 1  # prototype 0 keeps its trained value (sample -1)
        projection[b] = {"sample": sample, "ecg_id": sample + 100, "record": [f"rec{i}" for i in range(n)],
                         "labels": [["NORM"]] * n, "window": torch.zeros(n, dtype=torch.long),
                         "start": torch.full((n,), 10), "end": torch.full((n,), 60),
                         "start_s": torch.full((n,), 0.1, dtype=torch.float64),
                         "end_s": torch.full((n,), 0.6, dtype=torch.float64), "similarity": torch.rand(n)}
    extra = {"head": "fusion", "projection": projection, "thresholds": [0.3] * len(labels)}
    return save_model(path, net, cfg, labels, extra)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from medcl.pipelines.export import export

    tmp = tmp_path_factory.mktemp("ecg-export")
    ckpt = _tiny_checkpoint(tmp / "tiny.ckpt")
    return ckpt, export(ckpt, "weights", tmp / "weights"), export(ckpt, "onnx", tmp / "onnx")


def _probabilities(result: dict) -> np.ndarray:
    return np.array([[r["probabilities"][c] for c in result["labels"]] for r in result["records"]])


def test_weights_only_predictions_identical_to_checkpoint(files, shared_data):
    from medcl.pipelines.ecg import predict

    ckpt, weights, _ = files
    recs = _records(shared_data)
    ref, got = predict(recs, ckpt, batch_size=4), predict(recs, weights, batch_size=4)
    assert np.array_equal(_probabilities(ref), _probabilities(got))
    assert ref["records"] == got["records"]  # findings, prototypes and their provenance too


def test_onnx_matches_pytorch_on_real_records(files, shared_data, tmp_path):
    from medcl.cli import main
    from medcl.export.onnx import OnnxModel
    from medcl.io.ecg import read_ecg
    from medcl.pipelines.ecg import predict
    from medcl.pipelines.ecg_model import load_model

    ckpt, _, onnx = files
    recs = _records(shared_data)
    model = OnnxModel(onnx.parent, "ecg")
    assert model.card["outputs"] == ["probabilities", "similarities"]
    net, cfg, labels, _ = load_model(ckpt)
    x = np.stack([read_ecg(r, fs=cfg.data.fs, n_samples=cfg.data.length, highpass=cfg.data.highpass).signal
                  for r in recs[:5]])  # batch 5: not the export example's 2
    probs, sims = model(x)
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    ref_probs = torch.sigmoid(out["fused"]).numpy()
    ref_sims = torch.cat([out[f"{b}.similarities"] for b in ("rhythm", "morphology", "global")], 1).numpy()
    assert probs.shape == (5, 71) and sims.shape == ref_sims.shape
    assert np.abs(probs - ref_probs).max() < 1e-4 and np.abs(sims - ref_sims).max() < 1e-4

    assert main(["ecg", "predict", *recs, "--checkpoint", str(onnx.parent), "--engine", "onnxruntime",
                 "--out", str(tmp_path / "ort")]) == 0
    got = json.loads((tmp_path / "ort" / "predictions.json").read_text())
    ref = predict(recs, ckpt)
    assert np.abs(_probabilities(got) - _probabilities(ref)).max() < 1e-4
    assert [[f["code"] for f in r["findings"]] for r in got["records"]] == \
        [[f["code"] for f in r["findings"]] for r in ref["records"]]


def test_onnx_folder_files(files):
    _, _, onnx = files
    folder = onnx.parent
    labels = json.loads((folder / "labels.json").read_text())
    protos = json.loads((folder / "prototypes.json").read_text())
    weight = np.load(folder / "contribution_weights.npy", allow_pickle=False)
    assert len(labels) == 71 and weight.shape == (71, len(protos))
    rhythm = [p for p in protos if p["branch"] == "rhythm"]
    assert rhythm[0]["source_record"] is None and rhythm[1]["source_record"] == "rec1"
    assert rhythm[1]["window"] == {"start": 10, "end": 60, "start_s": 0.1, "end_s": 0.6}
    assert all(p["class"] in labels for p in protos)
    card = json.loads((folder / "card.json").read_text())
    assert card["preprocessing"]["fs"] == 100 and card["head"] == "fusion"


def test_ecg_files_refused_as_zones_and_onnx_refused_for_zones(files):
    from medcl.engine import load_model_checkpoint
    from medcl.pipelines.export import export

    ckpt, weights, onnx = files
    with pytest.raises(MedclError, match="family 'ecg', expected 'zones'"):
        load_model_checkpoint(weights, "zones")
    with pytest.raises(MedclError, match="supports the families zones, not 'ecg'"):
        export(ckpt, "bundle", onnx.parent / "never")
    assert not (onnx.parent / "never").exists()


def test_onnx_providers_follow_the_device(monkeypatch):
    from medcl.export.onnx import onnx_providers

    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    gpu_build = ["TensorrtExecutionProvider", cuda, cpu]
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert onnx_providers("cpu", gpu_build) == [cpu]
    assert onnx_providers("cuda", gpu_build) == [(cuda, {"device_id": 0}), cpu]
    assert onnx_providers("cuda:1", gpu_build) == [(cuda, {"device_id": 1}), cpu]
    assert onnx_providers("auto", gpu_build) == [(cuda, {"device_id": 0}), cpu]
    assert onnx_providers("auto", ["AzureExecutionProvider", cpu]) == [cpu]
    monkeypatch.setenv("LOCAL_RANK", "3")  # torchrun: this process's GPU, as pick_device
    assert onnx_providers("auto", gpu_build) == [(cuda, {"device_id": 3}), cpu]
    with pytest.raises(MedclError, match=r"^--device cuda:0: onnxruntime has no CUDA provider"):
        onnx_providers("cuda:0", [cpu])
    with pytest.raises(MedclError, match=r"^--device mps: onnxruntime runs on cpu or cuda only"):
        onnx_providers("mps", gpu_build)
    with pytest.raises(MedclError, match=r"^--device gpu: not a device name"):
        onnx_providers("gpu", gpu_build)


def test_predict_on_the_cpu_with_both_engines(files, shared_data, tmp_path):
    from medcl.cli import main
    from medcl.export.onnx import OnnxModel
    from medcl.pipelines.ecg import predict

    ckpt, _, onnx = files
    recs = _records(shared_data)[:3]
    assert OnnxModel(onnx.parent, "ecg", device="cpu").session.get_providers() == ["CPUExecutionProvider"]
    ref = predict(recs, ckpt, device="cpu")
    for engine, model in (("torch", ckpt), ("onnxruntime", onnx.parent)):
        out = tmp_path / engine
        assert main(["ecg", "predict", *recs, "--checkpoint", str(model), "--engine", engine, "--device", "cpu",
                     "--out", str(out)]) == 0
        got = json.loads((out / "predictions.json").read_text())
        assert len(got["records"]) == 3
        assert np.abs(_probabilities(got) - _probabilities(ref)).max() < 1e-4


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_predict_on_cuda_without_a_gpu_is_a_one_line_error(files, shared_data, tmp_path, capsys):
    import onnxruntime as ort

    from medcl.cli import main

    ckpt, _, onnx = files
    recs = _records(shared_data)[:1]
    engines = [("torch", ckpt, "CUDA is not available")]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        engines.append(("onnxruntime", onnx.parent, "onnxruntime has no CUDA provider"))
    for engine, model, why in engines:
        capsys.readouterr()
        assert main(["ecg", "predict", *recs, "--checkpoint", str(model), "--engine", engine, "--device", "cuda:1",
                     "--out", str(tmp_path / engine)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"medcl: error: --device cuda:1: {why}") and err.count("\n") == 1, err
        assert not (tmp_path / engine).exists()
