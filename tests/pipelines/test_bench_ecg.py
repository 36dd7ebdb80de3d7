"""``medcl bench ecg`` compares equal work: the reference step (the authors' plain PyTorch code, re-implemented
without medcl) and medcl's step give the same loss, gradients and Adam update on the same weights and batch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from medcl.pipelines.bench import ecg as bench
from medcl.pipelines.bench import ecg_reference

torch.set_num_threads(2)


def _pair(name: str, batch: int = 3):
    branch, ref, loss_fn, x, y, labels = bench.branch_pair(name, batch, seed=1)
    return branch.double(), ref.double(), loss_fn.double(), x.double(), y.double(), labels.double()


def _medcl_loss(branch, loss_fn, x, y):
    out = branch(x)
    layer = branch.prototypes
    return loss_fn(out["logits"], y, out["similarities"], layer.prototypes, layer.identity)["loss"]


def _reference_loss(name, ref, x, y, labels):
    logits, _, sims = ref(x if name == "rhythm" else x.unsqueeze(1))
    return ecg_reference.prototype_loss(logits, y, ref, sims, ecg_reference.class_weights(labels))


@pytest.mark.parametrize("name", ["rhythm", "morphology", "global"])
def test_reference_and_medcl_losses_and_gradients_agree_in_float64(name):
    branch, ref, loss_fn, x, y, labels = _pair(name)
    ours, theirs = _medcl_loss(branch, loss_fn, x, y), _reference_loss(name, ref, x, y, labels)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    ours.backward()
    theirs.backward()
    prefix = "backbone." if name == "rhythm" else "backbone.net."
    pairs = {"prototypes.prototypes": "prototype_vectors", f"{prefix}conv1.weight": "feature_extractor.conv1.weight",
             f"{prefix}layer4.1.conv2.weight": "feature_extractor.layer4.1.conv2.weight",
             "add_on.0.weight": "add_on_layers.0.weight", "add_on.2.bias": "add_on_layers.2.bias"}
    mine, refs = dict(branch.named_parameters()), dict(ref.named_parameters())
    for a, b in pairs.items():
        assert mine[a].grad.abs().max() > 0
        torch.testing.assert_close(mine[a].grad, refs[b].grad, rtol=1e-8, atol=1e-12, msg=f"{a} vs {b}")


def test_one_step_each_updates_the_shared_weights_identically():
    name = "global"
    branch, ref, loss_fn, x, y, labels = _pair(name)
    before = branch.prototypes.prototypes.detach().clone()
    bench.medcl_step(branch, loss_fn, x, y, compile=False)()
    bench.reference_step(name, ref, x, y, labels)()
    after = branch.prototypes.prototypes.detach()
    assert (after - before).abs().max() > 1e-6  # it moved (Adam's first step: about lr per entry)
    torch.testing.assert_close(after, ref.prototype_vectors.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(branch.add_on[0].weight.detach(), ref.add_on_layers[0].weight.detach(),
                               rtol=1e-9, atol=1e-12)


def test_reference_window_loop_is_the_mean_of_per_window_scaled_cosines():
    """Hand check of the reference layer: one prototype equal to the only window gives floor(sqrt(D L)) / L."""
    ref = ecg_reference.ReferenceProtoNet(2, 1, 1, torch.ones(1, 1), proto_dim=8, proto_time_len=2).double()
    feats = torch.rand(1, 8, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        ref.prototype_vectors.copy_(feats[0:1])
    sims = ref.cos_activation(feats)
    expected = 4 / 2 * (feats.square().sum() / (feats.square().sum() + 1e-4))  # floor(sqrt(16)) / 2, eps inside
    torch.testing.assert_close(sims[0, 0, 0], expected, rtol=1e-12, atol=1e-12)


def test_reference_module_imports_no_medcl(repo_root: Path):
    tree = ast.parse((repo_root / "pipelines" / "bench" / "ecg_reference.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.split(".")[0] in ("medcl", "pipelines") for m in modules), modules


def test_copy_to_reference_rejects_a_branch_of_another_shape():
    branch, *_ = bench.branch_pair("global", 2)
    wrong = ecg_reference.ReferenceProtoNet(2, 3, 7, torch.ones(3, 3), proto_time_len=3)  # partial, not global
    with pytest.raises(RuntimeError, match="size mismatch"):
        bench.copy_to_reference(branch, wrong)


def test_inference_copy_folds_batchnorm_and_keeps_outputs():
    from medcl.nets.protoecg import ProtoECGNet, inference_copy

    torch.manual_seed(0)
    net = ProtoECGNet({"rhythm": [0, 1], "morphology": [2, 3], "global": [4]}, 5,
                      {"rhythm": 2, "morphology": 2, "global": 2}, width=8, proto_dim=16)
    net.train()
    net(torch.randn(6, 12, 1000))  # running statistics away from their defaults
    net.eval()
    x = torch.randn(3, 12, 1000)
    fast = inference_copy(net)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fast.modules())
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())  # original intact
    with torch.no_grad():
        a, b = net(x), fast(x)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)


def test_table_shows_the_opt_in_fast_paths_against_the_default():
    from medcl.pipelines.bench.ecg import table_rows

    rates = {"reference": {"median": 50.0}, "medcl": {"median": 80.0}, "medcl_fast_paths": {"median": 60.0}}
    rows = table_rows({"train": {"global": {"prototypes": 21, "samples_per_s": rates, "speedup": 1.6,
                                            "fast_paths_over_default": 0.75}}})
    assert [r["figure"] for r in rows] == ["ecg train step, global (21 prototypes)",
                                           "ecg train step, global: medcl default vs opt-in fast_paths (one-row convs)"]
    assert rows[1]["reference"] == {"median": 80.0} and rows[1]["medcl"] == {"median": 60.0}
    assert rows[1]["ratio"] == 0.75
