"""SepCLR weights-only export: the safetensors file loads through the same loader with identical outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medcl.errors import MedclError

REPO = Path(__file__).resolve().parents[2]


def test_weights_only_file_gives_identical_embeddings(tmp_path):
    from medcl.config import load_config
    from medcl.pipelines.export import export
    from medcl.pipelines.sepclr import SepCLRConfig, build_net, load_net

    cfg = load_config(SepCLRConfig, REPO / "configs/sepclr/cohort.yaml", ["model.width=4"])
    torch.manual_seed(0)
    net = build_net(cfg)
    with torch.no_grad():  # non-default BatchNorm statistics must travel too
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    payload = {"family": "sepclr", "config": cfg.model_dump(mode="json"), "label_map": None,
               "state_dict": net.state_dict(), "versions": {}, "extra": {}}
    torch.save({"medcl": payload}, tmp_path / "model.ckpt")
    weights = export(tmp_path / "model.ckpt", "weights", tmp_path / "w")
    a, _ = load_net(tmp_path / "model.ckpt")
    b, cfg_b = load_net(weights)
    assert cfg_b == cfg
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
    for u, v in zip(out_a, out_b):
        assert torch.equal(u, v)
    with pytest.raises(MedclError, match="supports the families ecg, zones, not 'sepclr'"):
        export(weights, "onnx", tmp_path / "onnx")
