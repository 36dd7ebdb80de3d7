"""Prototype layers and ProtoECGNet branches against plain loop references of the official code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcl.nets.protoecg import BRANCHES, ProtoECGNet, build_branch
from medcl.nets.prototype import GlobalPrototypes1D, TemporalPrototypes2D, class_identity

torch.set_num_threads(2)


def reference_cos_activation(x: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """The official ProtoECGNet2D.cos_activation, loop over windows (x (B,D,1,T), protos (P,D,1,L))."""
    eps = 1e-4
    num_p, dim, _, length = protos.shape
    input_vector_length = int((dim * length) ** 0.5)
    normalizing_factor = (1 * length) ** 0.5
    batch, _, _, time = x.shape
    out = torch.zeros(batch, num_p, time - length + 1, dtype=x.dtype)
    p = protos.squeeze(2)
    p_scaled = p / torch.sqrt(torch.sum(p**2, dim=(1, 2), keepdim=True) + eps) / normalizing_factor
    for i in range(time - length + 1):
        seg = x[:, :, 0, i : i + length]
        seg_scaled = input_vector_length * seg / torch.sqrt(torch.sum(seg**2, dim=(1, 2), keepdim=True) + eps)
        seg_scaled = seg_scaled / normalizing_factor
        out[:, :, i] = seg_scaled.reshape(batch, -1) @ p_scaled.reshape(num_p, -1).T
    return out


def test_identity_and_classifier_init():
    ident = class_identity(3, 2)
    assert ident.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]
    layer = GlobalPrototypes1D(3, 2, 4)
    w = layer.classifier.weight
    assert layer.classifier.bias is None
    assert w.shape == (3, 6)
    assert w[0].tolist() == [1, 1, -0.5, -0.5, -0.5, -0.5]
    assert w[2].tolist() == [-0.5, -0.5, -0.5, -0.5, 1, 1]


@pytest.mark.parametrize("length", [3, 7])
def test_scaled_cosine_matches_reference_loop(length):
    torch.manual_seed(0)
    layer = TemporalPrototypes2D(4, 3, 16, length).double()
    x = torch.rand(5, 16, 1, 12, dtype=torch.float64)
    x[1, :, :, 2:6] = 0.0  # an all-zero window exercises the eps
    ours = layer.window_similarities(x)
    ref = reference_cos_activation(x, layer.prototypes.detach())
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    out = layer(x)
    torch.testing.assert_close(out["similarities"], ref.mean(-1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["logits"], out["similarities"] @ layer.classifier.weight.T)


def test_scale_factor_of_reference():
    # floor(sqrt(512 T)) / T: 13 for T = 3, 4 for T = 32.
    assert TemporalPrototypes2D(1, 1, 512, 3).scale == 13
    assert TemporalPrototypes2D(1, 1, 512, 32).scale == 4
    layer = TemporalPrototypes2D(1, 1, 512, 3).double()
    x = layer.prototypes.detach().clone() * 1e3  # same direction: cosine ~1
    sims = layer.window_similarities(x)
    assert sims.shape == (1, 1, 1)
    assert math.isclose(float(sims.detach()), 13.0, rel_tol=1e-6)


def test_max_pooling_option():
    torch.manual_seed(1)
    layer = TemporalPrototypes2D(2, 2, 8, 3, pooling="max").double()
    x = torch.rand(3, 8, 1, 9, dtype=torch.float64)
    ref = reference_cos_activation(x, layer.prototypes.detach()).amax(-1)
    torch.testing.assert_close(layer(x)["similarities"], ref)
    with pytest.raises(ValueError, match="pooling"):
        TemporalPrototypes2D(2, 2, 8, 3, pooling="median")


def test_global_1d_is_plain_cosine():
    torch.manual_seed(2)
    layer = GlobalPrototypes1D(3, 2, 10).double()
    f = torch.randn(4, 10, dtype=torch.float64)
    sims = layer(f)["similarities"]
    p = layer.prototypes.detach()
    for b in range(4):
        for j in range(6):
            expected = torch.dot(f[b], p[j]) / (f[b].norm() * p[j].norm())
            assert math.isclose(float(sims[b, j]), float(expected), rel_tol=1e-12)
    with pytest.raises(ValueError, match="features must be"):
        layer(torch.randn(4, 9, dtype=torch.float64))


def test_window_segment_equals_slicing():
    layer = TemporalPrototypes2D(2, 1, 6, 3)
    f = torch.randn(4, 6, 1, 10)
    win = torch.tensor([0, 7, 3, 5])
    rows = torch.tensor([2, 1, 0, 2])
    seg = layer.window_segment(f, rows, win)
    for k in range(4):
        torch.testing.assert_close(seg[k], f[rows[k], :, :, win[k] : win[k] + 3])
    # a prototype set to a segment has maximal similarity in that window
    with torch.no_grad():
        layer.prototypes[0] = seg[1]
    assert int(layer.window_similarities(f)[1, 0].argmax()) == 7
    assert seg.shape == (4, 6, 1, 3)


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_shapes_and_gradients(name):
    torch.manual_seed(0)
    branch = build_branch(name, num_classes=3, per_class=2, width=4, layers=(1, 1, 1, 1), proto_dim=8,
                          n_samples=200)
    x = torch.randn(2, 12, 200)
    feats = branch.features(x)
    if name == "rhythm":
        assert feats.shape == (2, 8)
    else:
        assert feats.shape[:3] == (2, 8, 1)
        assert feats.shape[-1] == math.ceil(200 / 32)
    assert feats.min() >= 0 and feats.max() <= 1  # sigmoid add-on
    out = branch(x)
    assert out["similarities"].shape == (2, 6) and out["logits"].shape == (2, 3)
    out["logits"][:, 0].sum().backward()  # (the sum over classes has zero gradient: +1 - 2 * 0.5)
    assert branch.prototypes.prototypes.grad.abs().sum() > 0
    resnet = branch.backbone if name == "rhythm" else branch.backbone.net
    assert resnet.conv1.weight.grad.abs().sum() > 0
    if name == "global":
        assert branch.prototypes.length == feats.shape[-1]
    if name != "rhythm":
        assert branch.backbone.net.conv1.kernel_size == (12, 7)


def test_protoecgnet_forward_and_fusion():
    torch.manual_seed(0)
    idx = {"rhythm": [0, 1], "morphology": [2, 3, 4], "global": [5]}
    net = ProtoECGNet(idx, 6, {"rhythm": 2, "morphology": 3, "global": 1}, width=4, layers=(1, 1, 1, 1),
                      proto_dim=8, n_samples=200)
    out = net(torch.randn(3, 12, 200))
    assert out["fused"].shape == (3, 6)
    assert out["morphology.similarities"].shape == (3, 9)
    assert net.prototype_offsets() == {"rhythm": 0, "morphology": 4, "global": 13}
    sims = torch.cat([out[f"{b}.similarities"] for b in BRANCHES], 1)
    torch.testing.assert_close(out["fused"], F.linear(sims, net.fusion.weight, net.fusion.bias))
    assert net.label_index("morphology").tolist() == [2, 3, 4]
