"""SepCLR networks: MONAI ResNet encoders, heads, normalisation, no weight sharing, SimCLR baseline."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medcl.nets.sepclr import ProjectionHead, SepCLRNet, SimCLRNet, build_encoder

torch.set_num_threads(1)


def _layer1_size(enc: nn.Module) -> tuple[int, ...]:
    seen = []
    enc.layer1.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    enc.eval()(torch.zeros(1, 1, 32, 32))
    return seen[0]


def test_cifar_stem_is_3x3_stride1_without_maxpool():
    enc = build_encoder(16, spatial_dims=2, depth=18, width=8, cifar_stem=True)
    assert enc.conv1.kernel_size == (3, 3) and enc.conv1.stride == (1, 1)
    assert _layer1_size(enc) == (32, 32)  # no stride, no max-pool before the first stage
    assert sum(len(getattr(enc, f"layer{i}")) for i in range(1, 5)) == 8  # ResNet-18: 2+2+2+2 blocks
    wide = build_encoder(16, spatial_dims=2, depth=10, width=8, cifar_stem=False)
    assert wide.conv1.kernel_size == (7, 7) and wide.conv1.stride == (2, 2)
    assert _layer1_size(wide) == (8, 8)


@pytest.mark.parametrize(("dims", "shape"), [(2, (4, 1, 32, 32)), (3, (4, 1, 16, 16, 16))])
def test_sepclr_net_outputs(dims, shape):
    torch.manual_seed(0)
    net = SepCLRNet(common_dim=6, salient_dim=5, spatial_dims=dims, depth=10, width=4)
    out = net(torch.randn(shape))
    assert out.c.shape == (4, 6) and out.zc.shape == (4, 6)
    assert out.s.shape == (4, 5) and out.zs.shape == (4, 5)
    torch.testing.assert_close(out.zc.norm(dim=1), torch.ones(4))  # common head output on the sphere
    assert not torch.allclose(out.zs.norm(dim=1), torch.ones(4))  # salient head output is not normalised
    out.zs.sum().backward()
    assert all(p.grad is None for p in net.common_encoder.parameters())  # separate encoders
    assert net.salient_encoder.conv1.weight.grad.abs().sum() > 0


def test_encoders_do_not_share_weights():
    net = SepCLRNet(4, 4, spatial_dims=2, depth=10, width=4)
    common = {id(p) for p in net.common_encoder.parameters()}
    assert common.isdisjoint(id(p) for p in net.salient_encoder.parameters())


def test_projection_head_layout_and_salient_norm():
    head = ProjectionHead(7)
    assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].in_features == 7 and head[0].out_features == 128 and head[3].out_features == 7
    net = SepCLRNet(4, 3, spatial_dims=2, depth=10, width=4).eval()
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(net.salient_norm(x), net.embed(x)[1].norm(dim=1))


def test_simclr_baseline_dimension():
    net = SimCLRNet(dim=10, spatial_dims=2, depth=10, width=4)
    h, z = net(torch.randn(3, 1, 32, 32))
    assert h.shape == (3, 10) and z.shape == (3, 10)


def test_bad_depth():
    with pytest.raises(ValueError, match="depth 7"):
        build_encoder(4, depth=7)
