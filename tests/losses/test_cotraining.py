"""Co-training losses: ramp values, consistency, Dice+CE against plain references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcl.data.zones_labels import ZONES_TO_A, ZONES_TO_B
from medcl.losses.cotraining import PathConsistencyLoss, ZonesSupervisedLoss, sigmoid_rampup


def _merge(p5: torch.Tensor, table: tuple[int, ...]) -> torch.Tensor:
    out = torch.zeros(p5.shape[0], max(table) + 1, *p5.shape[2:], dtype=p5.dtype)
    for zone, cls in enumerate(table):
        out[:, cls] += p5[:, zone]
    return out


def _plain_dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Independent batch Dice (per class over all samples, smooth 1e-5) + mean cross-entropy."""
    probs = logits.softmax(1)
    onehot = torch.zeros_like(probs)
    for c in range(logits.shape[1]):
        onehot[:, c] = (target[:, 0] == c).float()
    dims = (0, *range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = 1 - (2 * inter + 1e-5) / (denom + 1e-5)
    return dice.mean() + F.cross_entropy(logits, target[:, 0].long())


@pytest.mark.parametrize(
    ("step", "length", "expected"),
    [
        (0, 10, math.exp(-5)),
        (5, 10, math.exp(-1.25)),
        (10, 10, 1.0),
        (25, 10, 1.0),
        (-3, 10, math.exp(-5)),
        (4, 0, 1.0),
    ],
)
def test_sigmoid_rampup_hand_values(step: float, length: float, expected: float) -> None:
    assert sigmoid_rampup(step, length) == pytest.approx(expected)


def test_consistency_zero_when_paths_agree_positive_otherwise() -> None:
    torch.manual_seed(0)
    p5 = torch.randn(2, 5, 4, 4, 3).softmax(1)
    logits_a, logits_b = _merge(p5, ZONES_TO_A).log(), _merge(p5, ZONES_TO_B).log()
    loss = PathConsistencyLoss()
    assert float(loss(logits_a, logits_b)) == pytest.approx(0.0, abs=1e-10)
    other = torch.randn(2, 4, 4, 4, 3, requires_grad=True)
    logits_a = logits_a.clone().requires_grad_(True)
    value = loss(logits_a, other)
    # plain reference: mean over voxels of (dTZ^2 + dBG^2) / 2 from the two estimates of each class
    pa, pb = logits_a.softmax(1), other.softmax(1)
    d_tz = pb[:, 1] - (pa[:, 2] - pb[:, 2])
    d_bg = (pa[:, 0] - pb[:, 3]) - (pb[:, 0] - pa[:, 1])
    torch.testing.assert_close(value, ((d_tz**2 + d_bg**2) / 2).mean())
    assert float(value.detach()) > 1e-3
    value.backward()
    assert other.grad.abs().sum() > 0 and logits_a.grad.abs().sum() > 0


def test_consistency_reduction_none_and_shape_errors() -> None:
    a, b = torch.randn(1, 3, 2, 2, 2), torch.randn(1, 4, 2, 2, 2)
    assert PathConsistencyLoss(reduction="none")(a, b).shape == (1, 1, 2, 2, 2)
    with pytest.raises(ValueError, match=r"path B.*\(1, 3, 2, 2, 2\)"):
        PathConsistencyLoss()(a, a)
    with pytest.raises(ValueError, match="does not match"):
        PathConsistencyLoss()(a, torch.randn(1, 4, 2, 2, 3))


def test_supervised_terms_match_plain_dice_ce_per_path_and_bce_aux() -> None:
    torch.manual_seed(1)
    zones = torch.randint(0, 5, (2, 1, 6, 6, 3))
    outputs = {
        "a": torch.randn(2, 3, 6, 6, 3),
        "b": torch.randn(2, 4, 6, 6, 3),
        "aux": torch.randn(2, 1, 6, 6, 3),
    }
    loss = ZonesSupervisedLoss(aux="mask", lambda_aux=0.5)
    terms = loss.terms(outputs, zones)
    target_a = torch.tensor(ZONES_TO_A)[zones]
    target_b = torch.tensor(ZONES_TO_B)[zones]
    torch.testing.assert_close(terms["a"], _plain_dice_ce(outputs["a"], target_a))
    torch.testing.assert_close(terms["b"], _plain_dice_ce(outputs["b"], target_b))
    bce = F.binary_cross_entropy_with_logits(outputs["aux"], (zones > 0).float())
    torch.testing.assert_close(terms["aux"], bce)
    torch.testing.assert_close(loss(outputs, zones), terms["a"] + terms["b"] + 0.5 * bce)


def test_supervised_baseline_and_sdm_aux() -> None:
    torch.manual_seed(2)
    zones = torch.randint(0, 5, (1, 1, 4, 4, 2))
    fused = torch.randn(1, 5, 4, 4, 2)
    torch.testing.assert_close(ZonesSupervisedLoss()({"fused": fused}, zones), _plain_dice_ce(fused, zones))
    outputs = {
        "a": torch.randn(1, 3, 4, 4, 2),
        "b": torch.randn(1, 4, 4, 4, 2),
        "aux": torch.randn(1, 1, 4, 4, 2),
    }
    sdm = torch.rand(1, 1, 4, 4, 2) * 2 - 1
    loss = ZonesSupervisedLoss(aux="sdm")
    torch.testing.assert_close(
        loss.terms(outputs, zones, sdm)["aux"], ((outputs["aux"].tanh() - sdm) ** 2).mean()
    )
    with pytest.raises(ValueError, match="signed distance"):
        loss(outputs, zones)


def test_supervised_shape_errors_name_the_shapes() -> None:
    zones = torch.zeros(1, 1, 4, 4, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(1, 5, 4, 4, 2\)"):
        ZonesSupervisedLoss()({"a": torch.zeros(1, 5, 4, 4, 2), "b": torch.zeros(1, 4, 4, 4, 2)}, zones)
    with pytest.raises(ValueError, match="does not match"):
        ZonesSupervisedLoss()({"fused": torch.zeros(1, 5, 4, 4, 3)}, zones)


def test_consistency_alone_drives_the_paths_to_agree() -> None:
    from medcl.nets.dualpath import build_zones_net, shared_disagreement

    torch.manual_seed(3)
    net = build_zones_net(
        {
            "filters": [4, 8, 8],
            "kernel_sizes": [[3, 3, 1], [3, 3, 1], [3, 3, 3]],
            "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2]],
        }
    )
    x = torch.randn(2, 1, 8, 8, 4)
    loss_fn = PathConsistencyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def disagreement() -> float:
        with torch.no_grad():
            out = net(x)
            return float(shared_disagreement(out["a"].softmax(1), out["b"].softmax(1)).abs().mean())

    before = disagreement()
    for _ in range(20):
        out = net(x)
        opt.zero_grad()
        loss_fn(out["a"], out["b"]).backward()
        opt.step()
    assert disagreement() < 0.5 * before
