"""The training step's fast paths keep the maths: one-row convolutions of the 2D branches (opt-in,
:func:`fast_paths`) and the rows weight layout of the rhythm branch against the plain paths
(:func:`plain_paths`), float64."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medcl.losses.prototype import PrototypeLoss, jaccard_matrix, positive_weights
from medcl.nets.protoecg import (
    OneRowConv2d,
    build_branch,
    channels_last_branch,
    fast_paths,
    one_row_convs,
    one_row_layout,
    plain_paths,
)

torch.set_num_threads(2)


@pytest.mark.parametrize(("stride", "layout"), [(1, False), (2, False), (1, True), (2, True)])
def test_one_row_conv_equals_the_full_kernel_on_a_one_row_map(stride, layout):
    torch.manual_seed(0)
    full = nn.Conv2d(6, 5, 3, stride=stride, padding=1).double()
    fast = one_row_convs(copy.deepcopy(full))
    assert type(fast) is OneRowConv2d
    if layout:  # kernel rows outermost: each row is a contiguous channels-last (O, I, 1, kw) tensor
        one_row_layout(fast)
        assert fast.weight[:, :, 1:2].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast.weight, full.weight, rtol=0, atol=0)
    x = torch.randn(2, 6, 1, 11, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    a, b = full(x), fast(x2)
    assert a.shape == b.shape == (2, 5, 1, 11 if stride == 1 else 6)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(a)
    a.backward(g)
    b.backward(g)
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.weight.grad, full.weight.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.bias.grad, full.bias.grad, rtol=1e-12, atol=1e-12)
    assert fast.weight.grad.stride() == fast.weight.stride()  # accumulated without a layout copy
    with torch.no_grad():  # inference takes the plain slice
        torch.testing.assert_close(fast(x), full(x), rtol=1e-12, atol=1e-12)
    # the rows that only meet the zero padding get exactly zero gradient, on both paths
    assert full.weight.grad[:, :, [0, 2]].abs().max() == 0
    assert fast.weight.grad[:, :, 1].abs().max() > 0


def test_one_row_conv_takes_the_plain_path_on_taller_maps():
    torch.manual_seed(1)
    conv = one_row_convs(nn.Conv2d(3, 4, 3, padding=1).double())
    x = torch.randn(2, 3, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, 1, 1), rtol=0, atol=0)
    assert type(one_row_convs(conv, enabled=False)) is nn.Conv2d


def _step_loss(branch: nn.Module, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    loss_fn = PrototypeLoss(pos_weight=positive_weights(labels), cooccurrence=jaccard_matrix(labels)).double()
    out = branch(x)
    layer = branch.prototypes
    return loss_fn(out["logits"], y, out["similarities"], layer.prototypes, layer.identity)["loss"]


@pytest.mark.parametrize("name", ["rhythm", "morphology", "global"])
def test_fast_paths_keep_loss_and_every_gradient_in_float64(name):
    torch.manual_seed(2)
    fast = build_branch(name, num_classes=3, per_class=2, width=4, layers=(1, 1, 1, 1), proto_dim=8,
                        n_samples=200).double().train()
    fast_paths(fast)  # the opt-in
    channels_last_branch(fast)  # as the trainers do
    plain = plain_paths(copy.deepcopy(fast))
    assert not any(isinstance(m, OneRowConv2d) for m in plain.modules())
    if name == "rhythm":  # the fast layout: weight.unsqueeze(2) is channels-last without a copy
        w = fast.backbone.layer1[0].conv1.weight
        assert not w.is_contiguous() and w.unsqueeze(2).is_contiguous(memory_format=torch.channels_last)
    else:
        assert isinstance(fast.backbone.net.layer1[0].conv1, OneRowConv2d)
    x = torch.randn(4, 12, 200, dtype=torch.float64)
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float64)
    a, b = _step_loss(fast, x, labels, labels), _step_loss(plain, x, labels, labels)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    a.backward()
    b.backward()
    grads = dict(plain.named_parameters())
    checked = 0
    for key, p in fast.named_parameters():
        if p.grad is None:
            assert grads[key].grad is None, key
            continue
        torch.testing.assert_close(p.grad, grads[key].grad, rtol=1e-10, atol=1e-12, msg=key)
        checked += int(p.grad.abs().max() > 0)
    assert checked > 10
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert all(v.shape == plain.state_dict()[k].shape for k, v in fast.state_dict().items())


def _tiny_2d(name: str = "global") -> nn.Module:
    torch.manual_seed(3)
    return build_branch(name, num_classes=3, per_class=2, width=4, layers=(1, 1, 1, 1), proto_dim=8,
                        n_samples=200).double().eval()


def _weights(branch: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in branch.state_dict().items()}


@pytest.mark.parametrize("order", ["fast_paths_first", "channels_last_first"])
def test_fast_paths_are_opt_in_and_undone_with_the_same_state_dict(order):
    default = _tiny_2d()
    assert not any(isinstance(m, OneRowConv2d) for m in default.modules())  # plain Conv2d by default
    start = _weights(default)
    fast = copy.deepcopy(default)
    if order == "fast_paths_first":
        channels_last_branch(fast_paths(fast))
    else:
        fast_paths(channels_last_branch(fast))
    convs = [m for m in fast.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is OneRowConv2d for m in convs)
    assert not any(isinstance(m, OneRowConv2d) for m in fast.add_on.modules())  # 1x1 add-on stays plain
    w = fast.backbone.net.layer1[0].conv1.weight  # 3x3: each kernel row a channels-last (O, I, 1, 3) tensor
    assert w[:, :, 1:2].is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    state = fast.state_dict()
    assert list(state) == list(start) and all(torch.equal(state[k], v) for k, v in start.items())
    x = torch.randn(3, 12, 200, dtype=torch.float64)
    with torch.no_grad():
        ref = default(x)
        got = fast(x)
    torch.testing.assert_close(got["similarities"], ref["similarities"], rtol=1e-10, atol=1e-12)
    fast_paths(fast, enabled=False)
    assert not any(isinstance(m, OneRowConv2d) for m in fast.modules())
    assert w.is_contiguous(memory_format=torch.channels_last)  # back to the channels-last branch layout
    assert all(torch.equal(fast.state_dict()[k], v) for k, v in start.items())


def test_fast_paths_leave_the_rhythm_branch_alone():
    rhythm = _tiny_2d("rhythm")
    before = [(type(m), m.weight.stride()) for m in rhythm.modules() if hasattr(m, "weight")]
    fast_paths(rhythm)
    assert [(type(m), m.weight.stride()) for m in rhythm.modules() if hasattr(m, "weight")] == before
