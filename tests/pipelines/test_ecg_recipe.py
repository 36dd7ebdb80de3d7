"""The published recipe: input z-scoring inside the model, dropout, 2D init, cosine schedule,
per-branch early stopping, fold config, and branch scores from the fused model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medcl.config import load_config
from medcl.errors import MedclError
from medcl.nets.protoecg import ProtoECGNet, build_branch, load_resnet18_2d, resnet_backbone, zscore_leads

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
GROUPS = {"rhythm": [0, 1], "morphology": [2, 3, 4], "global": [5]}
TINY = dict(width=4, layers=(1, 1, 1, 1), proto_dim=8, n_samples=200)


def test_zscore_leads_by_hand():
    x = torch.tensor([[[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]]])
    z = zscore_leads(x)
    mean, std = 3.0, float(np.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + 0 + (6 - 3) ** 2) / 4))
    assert torch.allclose(z[0, 0], torch.tensor([(v - mean) / std for v in (1.0, 2.0, 3.0, 6.0)]))
    assert torch.equal(z[0, 1], torch.zeros(4))  # a flat lead stays finite


def test_zscore_model_is_invariant_to_amplitude_convention():
    """A model built with normalize=zscore gives the same outputs for mV and for gain/offset-changed input."""
    torch.manual_seed(0)
    net = ProtoECGNet(GROUPS, 6, {"rhythm": 2, "morphology": 2, "global": 2}, normalize="zscore", **TINY).eval()
    x = torch.randn(3, 12, 200)
    scale = torch.rand(1, 12, 1) * 5 + 0.1
    with torch.no_grad():
        a, b = net(x), net(x * scale + 2.0)
        for name in ("rhythm", "morphology"):  # the projection path sees the same input
            fa, fb = net.branches[name].features(x), net.branches[name].features(x * 1000)
            assert torch.allclose(fa, fb, atol=1e-5)
    assert torch.allclose(a["fused"], b["fused"], atol=1e-4)
    torch.manual_seed(0)
    plain = ProtoECGNet(GROUPS, 6, {"rhythm": 2, "morphology": 2, "global": 2}, **TINY).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(x)["fused"], plain(x * scale + 2.0)["fused"], atol=1e-3)


def test_dropout_after_layer3_only_in_training_and_keeps_state_keys():
    torch.manual_seed(0)
    with_d = build_branch("rhythm", 2, 2, dropout=0.5, **TINY)
    torch.manual_seed(0)
    without = build_branch("rhythm", 2, 2, **TINY)
    assert with_d.state_dict().keys() == without.state_dict().keys()
    x = torch.randn(2, 12, 200)
    seen = []
    with_d.backbone.layer4.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    with_d.train()
    with_d.features(x)
    assert (seen[-1] == 0).float().mean() > 0.3  # about half of layer 3's outputs dropped
    with_d.load_state_dict(without.state_dict())  # undo the BatchNorm statistics of the training pass
    with_d.eval(), without.eval()
    assert torch.allclose(with_d.features(x), without.features(x))


def test_init_2d_copies_a_resnet18_state_dict_except_conv1_and_fc(tmp_path):
    # a 3-channel 2D ResNet-18 with an fc has torchvision's resnet18 key layout and shapes
    ref = resnet_backbone(2, 64, (2, 2, 2, 2), 3).state_dict()
    ref["fc.weight"], ref["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    for k, v in ref.items():
        if v.is_floating_point():
            ref[k] = torch.randn_like(v)
    torch.save(ref, tmp_path / "resnet18.pth")
    branch = build_branch("global", 1, 1, n_samples=200)
    conv1 = branch.backbone.net.conv1.weight.clone()
    copied = load_resnet18_2d(branch.backbone, str(tmp_path / "resnet18.pth"))
    state = branch.backbone.net.state_dict()
    assert "layer4.1.conv2.weight" in copied and not any(k.startswith(("conv1", "fc")) for k in copied)
    assert all(torch.equal(state[k], ref[k]) for k in copied)
    assert torch.equal(branch.backbone.net.conv1.weight, conv1) and conv1.shape == (64, 1, 12, 7)
    narrow = build_branch("global", 1, 1, **TINY)
    with pytest.raises(MedclError, match="resnet18.pth: not a torchvision ResNet-18"):
        load_resnet18_2d(narrow.backbone, str(tmp_path / "resnet18.pth"))
    with pytest.raises(MedclError, match="missing.pth"):
        load_resnet18_2d(narrow.backbone, str(tmp_path / "missing.pth"))


def test_published_recipe_config():
    from medcl.pipelines.ecg import ECGConfig

    cfg = load_config(ECGConfig, REPO / "configs/ecg/protoecgnet.yaml")
    assert cfg.model.dropout == 0.35 and cfg.optim.weight_decay == pytest.approx(1.7e-4)
    assert cfg.optim.scheduler == "cosine" and cfg.optim.early_stopping == "per_branch"
    assert cfg.train.max_epochs == 200 and cfg.train.early_stopping_patience == 10
    assert cfg.data.folds.as_dict() == {"train": tuple(range(1, 9)), "val": (9,), "test": (10,)}
    assert cfg.data.normalize == "none" and cfg.model.init_2d is None  # reference defaults
    assert ECGConfig().data.normalize == "none" and ECGConfig().model.dropout == 0.0
    with pytest.raises(MedclError, match="data.folds: .*overlap"):
        load_config(ECGConfig, None, ["data.folds.val=[8]"])
    with pytest.raises(MedclError, match="data.normalize"):
        load_config(ECGConfig, None, ["data.normalize=robust"])


def test_cosine_schedule_follows_t_max_of_the_stage():
    from medcl.pipelines.ecg import ECGConfig
    from medcl.pipelines.ecg_model import build_net
    from medcl.pipelines.ecg_train import ECGModule

    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml",
                      ["optim.scheduler=cosine", "train.max_epochs=4", "model.per_class={rhythm: 1, morphology: 1, global: 1}"])
    from medcl.data.ptbxl import load_label_groups, packaged_statements

    labels = sorted(packaged_statements().code)
    groups = {b: [labels.index(c) for c in codes] for b, codes in load_label_groups().items()}
    module = ECGModule(build_net(cfg, groups, 71), cfg, "joint", labels, np.eye(8, 71))
    conf = module.configure_optimizers()
    sched, opt = conf["lr_scheduler"]["scheduler"], conf["optimizer"]
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(), sched.step()
    lr0 = cfg.optim.lr
    assert lrs == pytest.approx([lr0 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_branch_early_stopping_keeps_each_branch_best_epoch():
    from types import SimpleNamespace

    from medcl.pipelines.ecg_branch_stop import BranchEarlyStopping

    torch.manual_seed(0)
    net = ProtoECGNet(GROUPS, 6, {"rhythm": 1, "morphology": 1, "global": 1}, **TINY)
    module = SimpleNamespace(net=net)
    stop = BranchEarlyStopping(("rhythm", "morphology", "global"), patience=2)
    curves = {"rhythm": [0.6, 0.8, 0.7, 0.7, 0.9], "morphology": [0.5, 0.55, 0.6, 0.65, 0.7],
              "global": [0.9, 0.6, 0.6, 0.6, 0.6]}
    marks = {}
    for epoch in range(5):
        for b in curves:  # stamp each branch's weights with the epoch
            with torch.no_grad():
                if net.branches[b].prototypes.prototypes.requires_grad:
                    net.branches[b].prototypes.prototypes.fill_(epoch)
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, should_stop=False,
                                  callback_metrics={f"val_auroc_{b}": torch.tensor(c[epoch]) for b, c in curves.items()})
        stop.on_validation_end(trainer, module)
        marks[epoch] = trainer.should_stop
    # rhythm: best 0.8 at epoch 1, then two bad epochs -> stopped, never sees the 0.9
    # global: best at epoch 0, stopped after epoch 2; morphology improves every epoch
    assert stop.best_epoch == {"rhythm": 1, "morphology": 4, "global": 0}
    assert stop.stopped == {"rhythm": True, "morphology": False, "global": True}
    assert not any(p.requires_grad for p in net.branches["global"].parameters())
    stop.restore(net)
    assert float(net.branches["rhythm"].prototypes.prototypes.flatten()[0]) == 1.0
    assert float(net.branches["global"].prototypes.prototypes.flatten()[0]) == 0.0
    assert float(net.branches["morphology"].prototypes.prototypes.detach().flatten()[0]) == 4.0
    assert not any(marks.values())  # morphology still improving: the stage goes on
    clone = BranchEarlyStopping(("rhythm", "morphology", "global"), 2)
    clone.load_state_dict(stop.state_dict())
    assert clone.summary() == stop.summary()


def test_branch_contributions_are_the_fusion_layer_restricted_to_the_branch():
    from medcl.pipelines.ecg_model import branch_contributions

    torch.manual_seed(0)
    net = ProtoECGNet(GROUPS, 6, {"rhythm": 2, "morphology": 1, "global": 3}, **TINY).eval()
    with torch.no_grad():
        out = net(torch.randn(4, 12, 200))
        probs = branch_contributions(net, out)
        sims = out["morphology.similarities"]  # prototypes 2..4 of the fusion input
        w, bias = net.fusion.weight, net.fusion.bias
        for label in GROUPS["morphology"]:
            expect = torch.sigmoid(sims @ w[label, 4:7] + bias[label])
            assert torch.allclose(probs[:, label], expect.double(), atol=1e-6)
        expect = torch.sigmoid(out["global.similarities"] @ w[5, 7:10] + bias[5])
        assert torch.allclose(probs[:, 5], expect.double(), atol=1e-6)


def test_branch_head_probabilities_keep_ranks_of_huge_logits():
    """The fixed +1/-0.5 morphology heads give logits near -300: float32 sigmoid would tie them all at 0."""
    from medcl.pipelines.ecg_model import branch_probabilities

    net = ProtoECGNet(GROUPS, 6, {"rhythm": 1, "morphology": 1, "global": 1}, **TINY)
    out = {"fused": torch.zeros(3, 6), "rhythm.logits": torch.zeros(3, 2), "global.logits": torch.zeros(3, 1),
           "morphology.logits": torch.tensor([[-300.0, -250.0, 5.0], [-320.0, -240.0, 6.0], [-310.0, -260.0, 7.0]])}
    probs = branch_probabilities(net, out)
    assert torch.sigmoid(torch.tensor(-300.0)) == 0  # what float32 would give
    assert probs[1, 2] < probs[2, 2] < probs[0, 2] and probs[1, 3] > probs[0, 3] > probs[2, 3] > 0
