"""The joint-stage training step: ``optim.compile`` compiles the training forward and falls back to
eager (same outputs, a warning) when compilation fails; the state dict keeps its keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medcl.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _module(overrides: list[str]):
    from medcl.data.ptbxl import load_label_groups, packaged_statements
    from medcl.pipelines.ecg import ECGConfig
    from medcl.pipelines.ecg_model import build_net
    from medcl.pipelines.ecg_train import ECGModule

    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml",
                      ["model.per_class={rhythm: 1, morphology: 1, global: 1}", *overrides])
    labels = sorted(packaged_statements().code)
    groups = {b: [labels.index(c) for c in codes] for b, codes in load_label_groups().items()}
    torch.manual_seed(0)
    return ECGModule(build_net(cfg, groups, 71), cfg, "joint", labels, np.eye(8, 71)), cfg


def test_compile_switch_falls_back_to_eager_with_a_warning(monkeypatch):
    calls = []

    def failing_compile(fn, **kwargs):
        calls.append(kwargs)

        def compiled(*args):
            raise RuntimeError("inductor: no C++ compiler\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    module, cfg = _module(["optim.compile=true"])
    assert calls == [{"dynamic": False}]
    keys = list(module.net.state_dict())
    x = torch.randn(2, 12, cfg.data.length)
    module.net.eval()
    with pytest.warns(UserWarning, match=r"optim.compile: torch.compile failed \(RuntimeError: inductor: no C\+\+"):
        out = module.train_forward(x)
    torch.testing.assert_close(out["fused"], module.net(x)["fused"])
    assert module.train_forward(x)["fused"].shape == (2, 71)  # eager from now on, no second warning
    assert list(module.net.state_dict()) == keys


def test_compile_is_off_by_default(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: pytest.fail("compiled"))
    module, _ = _module([])
    assert module._train_net[0] is module.net
