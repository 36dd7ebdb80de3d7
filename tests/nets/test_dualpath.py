"""Dual-path zones network: shapes, gradients, anisotropy, fusion and uncertainty."""

from __future__ import annotations

import math

import pytest
import torch

from medcl.data.zones_labels import ZONES_TO_A, ZONES_TO_B
from medcl.errors import MedclError
from medcl.nets.dualpath import (
    BaselineZonesNet,
    DualPathZonesNet,
    build_zones_net,
    fuse_paths,
    normalised_entropy,
    shared_disagreement,
)

SMALL = {
    "filters": [4, 8, 16],
    "kernel_sizes": [[3, 3, 1], [3, 3, 1], [3, 3, 3]],
    "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2]],
}


def _merge(p5: torch.Tensor, table: tuple[int, ...]) -> torch.Tensor:
    """Plain reference: sum 5-class probabilities into a path's classes."""
    out = torch.zeros(p5.shape[0], max(table) + 1, *p5.shape[2:], dtype=p5.dtype)
    for zone, cls in enumerate(table):
        out[:, cls] += p5[:, zone]
    return out


def test_dualpath_shapes_and_gradients_reach_both_paths() -> None:
    torch.manual_seed(0)
    net = build_zones_net({"arch": "dualpath", **SMALL})
    assert isinstance(net, DualPathZonesNet)
    x = torch.randn(2, 1, 16, 16, 4, requires_grad=True)
    out = net(x)
    assert out["a"].shape == (2, 3, 16, 16, 4)
    assert out["b"].shape == (2, 4, 16, 16, 4)
    assert out["aux"].shape == (2, 1, 16, 16, 4)
    (out["a"].sum() + out["b"].square().sum() + out["aux"].sum()).backward()
    for name, module in (("path_a", net.path_a), ("path_b", net.path_b)):
        first = next(module.parameters())
        assert first.grad is not None and first.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_in_plane_only_kernels_and_pooling_in_first_levels() -> None:
    net = build_zones_net({"arch": "dualpath", **SMALL})
    convs = [m for m in net.path_a.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs[0].kernel_size == (3, 3, 1)
    assert any(c.stride == (2, 2, 1) for c in convs)
    # only the last level pools the slice axis: 2 slices suffice for a 3-level net
    assert net(torch.zeros(1, 1, 16, 16, 2))["a"].shape[-1] == 2


def test_no_aux_head_when_disabled_and_baseline_shape() -> None:
    net = build_zones_net({"arch": "dualpath", "aux": "none", **SMALL})
    assert "aux" not in net(torch.zeros(1, 1, 8, 8, 2))
    base = build_zones_net({"arch": "baseline", **SMALL})
    assert isinstance(base, BaselineZonesNet)
    x = torch.randn(1, 1, 8, 8, 2)
    assert base(x)["fused"].shape == (1, 5, 8, 8, 2)
    with torch.no_grad():
        probs, unc = base.zone_probabilities(x)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 8, 8, 2))
    assert unc.shape == (1, 1, 8, 8, 2) and float(unc.min()) >= 0 and float(unc.max()) <= 1


def test_fusion_of_agreeing_paths_reproduces_the_distribution() -> None:
    torch.manual_seed(1)
    p5 = torch.randn(3, 5, 4, 4, 2).softmax(1)
    pa, pb = _merge(p5, ZONES_TO_A), _merge(p5, ZONES_TO_B)
    torch.testing.assert_close(fuse_paths(pa, pb), p5)
    torch.testing.assert_close(shared_disagreement(pa, pb), torch.zeros(3, 1, 4, 4, 2))


def test_fusion_hand_computed_when_paths_disagree() -> None:
    # A: BG .5 PZ .2 TZ .3; B: BG .4 TZ .4 DPU .1 AFS .1.
    pa = torch.tensor([0.5, 0.2, 0.3]).view(1, 3, 1, 1, 1)
    pb = torch.tensor([0.4, 0.4, 0.1, 0.1]).view(1, 4, 1, 1, 1)
    # TZ = (0.4 + 0.3 - 0.1)/2 = 0.3; BG = (0.5 - 0.1 + 0.4 - 0.2)/2 = 0.3; sum = 0.3+0.2+0.3+0.1+0.1
    expected = torch.tensor([0.3, 0.2, 0.3, 0.1, 0.1]).view(1, 5, 1, 1, 1)
    torch.testing.assert_close(fuse_paths(pa, pb), expected)
    # d = 0.4 + 0.1 - 0.3 = 0.2, and the two BG estimates (0.4 vs 0.2) differ by the same amount
    torch.testing.assert_close(shared_disagreement(pa, pb).flatten(), torch.tensor([0.2]))


def test_fusion_clamps_negative_estimates_and_renormalises() -> None:
    pa = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1, 1)  # A: all TZ
    pb = torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 4, 1, 1, 1)  # B: all AFS
    # TZ = (0 + 1 - 0)/2 = .5, BG = (0 - 1 + 0 - 0)/2 = -.5 -> 0, AFS = 1: renormalised 1/3, 2/3
    expected = torch.tensor([0.0, 0.0, 1 / 3, 0.0, 2 / 3]).view(1, 5, 1, 1, 1)
    torch.testing.assert_close(fuse_paths(pa, pb), expected)


def test_zone_probabilities_sum_to_one_and_uncertainty_in_unit_range() -> None:
    torch.manual_seed(2)
    for unc_kind in ("disagreement", "entropy"):
        net = build_zones_net({"arch": "dualpath", "uncertainty": unc_kind, **SMALL}).eval()
        with torch.no_grad():
            probs, unc = net.zone_probabilities(torch.randn(2, 1, 8, 8, 2))
        assert probs.shape == (2, 5, 8, 8, 2) and unc.shape == (2, 1, 8, 8, 2)
        torch.testing.assert_close(probs.sum(1), torch.ones(2, 8, 8, 2))
        assert float(probs.min()) >= 0 and 0 <= float(unc.min()) and float(unc.max()) <= 1


def test_normalised_entropy_hand_values() -> None:
    uniform = torch.full((1, 5, 1), 0.2)
    onehot = torch.tensor([1.0, 0, 0, 0, 0]).view(1, 5, 1)
    half = torch.tensor([0.5, 0.5, 0, 0, 0]).view(1, 5, 1)
    assert float(normalised_entropy(uniform)) == pytest.approx(1.0)
    assert float(normalised_entropy(onehot)) == pytest.approx(0.0, abs=1e-6)
    assert float(normalised_entropy(half)) == pytest.approx(math.log(2) / math.log(5), rel=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [{"arch": "triple"}, {"aux": "depth"}, {"filters": [4, 8]}, {"uncertainty": "vibes"}],
)
def test_bad_model_settings_raise_medcl_error(cfg: dict) -> None:
    with pytest.raises(MedclError, match="model"):
        build_zones_net(cfg)
