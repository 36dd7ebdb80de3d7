"""SepCLR losses vs plain loop-based float64 references and the official code's formulation."""

from __future__ import annotations

import math

import pytest
import torch

from medcl.losses.sepclr import (
    PRESETS,
    AlignmentLoss,
    InformationLessLoss,
    KJEMLoss,
    SalientUniformityLoss,
    SepCLRLoss,
    UniformityLoss,
    kjem,
    uniformity,
)

torch.set_num_threads(1)


# ---------- plain loop references (python floats) ----------
def _sq(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def _norm(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def ref_align(a, b):
    return sum(_sq(x, y) for x, y in zip(a, b)) / len(a)


def ref_uniform(z):
    vals = [math.exp(-_sq(z[i], z[j])) for i in range(len(z)) for j in range(i + 1, len(z))]
    return math.log(sum(vals) / len(vals))


def ref_kjem(c, t):
    n = len(c)
    return sum(
        math.log(sum(math.exp(-_sq(c[i], c[j])) * math.exp(-_sq(t[i], t[j])) for j in range(n)) / n)
        for i in range(n)
    ) / n


def ref_total(c1, c2, s1, s2, y, beta_s, beta_reg, lam):
    c1, c2 = [_norm(v) for v in c1], [_norm(v) for v in c2]
    zero = [0.0] * len(s1[0])
    t1 = [v if lab else zero for v, lab in zip(s1, y)]
    t2 = [v if lab else zero for v, lab in zip(s2, y)]
    tg = [i for i, lab in enumerate(y) if lab]
    bg = [i for i, lab in enumerate(y) if not lab]
    common = ref_align(c1, c2) + ref_uniform(c1) + ref_uniform(c2)
    salient = ref_align([s1[i] for i in tg], [s2[i] for i in tg]) + ref_uniform(t1) + ref_uniform(t2)
    infoless = (sum(_sq(s1[i], zero) for i in bg) + sum(_sq(s2[i], zero) for i in bg)) / (2 * len(bg))
    jem = (ref_kjem(c1, t1) + ref_kjem(c2, t2)) / 2
    return common + beta_s * salient + beta_reg * infoless + lam * jem, (common, salient, infoless, jem)


# ---------- the official code's torch formulation (for gradients) ----------
def official_total(c1, c2, s1, s2, labels, beta_s, beta_reg, lam):
    def norm(x):
        return torch.nn.functional.normalize(x, dim=1, p=2)

    def align_loss(x, y):
        return (x - y).norm(p=2, dim=1).pow(2).mean()

    def uniform_loss(x):
        return torch.pdist(x, p=2).pow(2).mul(-1).exp().mean().log()

    def jem_loss(w, s):
        a = torch.cdist(s, s).pow(2).mul(-1).exp()
        b = torch.cdist(w, w).pow(2).mul(-1).exp()
        return (a * b).mean(-1).log().mean()

    t1, t2 = torch.clone(s1), torch.clone(s2)
    t1[labels == 0, :] = 0.0
    t2[labels == 0, :] = 0.0
    cm = align_loss(norm(c1), norm(c2)) + 2.0 * (uniform_loss(norm(c2)) + uniform_loss(norm(c1))) / 2.0
    sp = align_loss(s1[labels == 1], s2[labels == 1]) + 2.0 * (uniform_loss(t2) + uniform_loss(t1)) / 2.0
    reg = (align_loss(t1[labels == 0], s1[labels == 0]) + align_loss(t2[labels == 0], s2[labels == 0])) / 2.0
    jem = (jem_loss(norm(c1), t1) + jem_loss(norm(c2), t2)) / 2.0
    return cm + beta_s * sp + beta_reg * reg + lam * jem


def _batch(n=10, dc=4, ds=3, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    c1, c2 = torch.randn(n, dc, generator=g, dtype=torch.float64), torch.randn(n, dc, generator=g, dtype=torch.float64)
    s1 = scale * torch.randn(n, ds, generator=g, dtype=torch.float64)
    s2 = scale * torch.randn(n, ds, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1] * (n // 2))
    return c1, c2, s1, s2, labels


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_total_and_terms_match_loop_reference(preset):
    c1, c2, s1, s2, y = _batch(scale=0.5)
    loss = SepCLRLoss.from_preset(preset)
    terms = loss.terms(c1, c2, s1, s2, y)
    want, parts = ref_total(c1.tolist(), c2.tolist(), s1.tolist(), s2.tolist(), y.tolist(), *PRESETS[preset])
    got = [terms.common, terms.salient, terms.infoless, terms.kjem]
    for g_, w in zip(got, parts):
        assert g_.item() == pytest.approx(w, rel=1e-12, abs=1e-12)
    assert terms.total.item() == pytest.approx(want, rel=1e-12)


def test_value_and_gradients_match_official_formulation():
    c1, c2, s1, s2, y = _batch(n=12, seed=3, scale=0.4)
    ours = [t.clone().requires_grad_() for t in (c1, c2, s1, s2)]
    theirs = [t.clone().requires_grad_() for t in (c1, c2, s1, s2)]
    a = SepCLRLoss(beta_s=1.0, beta_reg=10.0, lam=10.0)(*ours, y)
    b = official_total(*theirs, y, 1.0, 10.0, 10.0)
    a.backward()
    b.backward()
    assert a.item() == pytest.approx(b.item(), rel=1e-12)
    for x, r in zip(ours, theirs):
        torch.testing.assert_close(x.grad, r.grad, rtol=1e-10, atol=1e-12)


def test_hand_computed_small_cases():
    # two points at squared distance 2: uniformity = log exp(-2) = -2
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert uniformity(z).item() == pytest.approx(-2.0)
    # alignment: rows differ by (1,0) and (0,2): mean(1, 4) = 2.5
    a = torch.zeros(2, 2, dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert AlignmentLoss()(a, b).item() == pytest.approx(2.5)
    # k-JEM of identical points is log 1 = 0; of two far pairs: log((1 + ~0)/2)
    assert kjem(z[:1].repeat(3, 1), z[:1].repeat(3, 1)).item() == pytest.approx(0.0)
    far = torch.tensor([[0.0], [100.0]], dtype=torch.float64)
    assert kjem(far, far).item() == pytest.approx(math.log(0.5))
    # information-less: background rows (label 0) norms^2 = 4 and 0 -> 2
    s = torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    assert InformationLessLoss()(s, torch.tensor([0, 0, 1])).item() == pytest.approx(2.0)
    # s'-uniformity: one target at distance 3 from two zero teachers -> pairs 9, 9, 0
    s = torch.tensor([[1.0, 1.0], [7.0, 7.0], [3.0, 0.0]], dtype=torch.float64)
    want = math.log((math.exp(-9) * 2 + 1) / 3)
    assert SalientUniformityLoss()(s, torch.tensor([0, 0, 1])).item() == pytest.approx(want)


def test_no_gradient_to_background_through_teacher():
    c1, c2, s1, s2, y = _batch(n=8, seed=1)
    s1.requires_grad_()
    (SalientUniformityLoss()(s1, y) + KJEMLoss()(c1, s1, y)).backward()
    assert torch.all(s1.grad[y == 0] == 0)
    assert torch.all(s1.grad[y == 1].abs().sum(1) > 0)
    # with the full loss, background rows only get gradient from the information-less term: 2 s / n_bg / 2
    s1.grad = None
    SepCLRLoss(beta_s=1.0, beta_reg=1.0, lam=1.0).terms(c1, c2, s1, s2, y).total.backward()
    torch.testing.assert_close(s1.grad[y == 0], s1.detach()[y == 0] / int((y == 0).sum()))


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e3, 1e6])
def test_finite_at_extreme_scales_and_duplicates(scale):
    c1, c2, s1, s2, y = (t.float() if t.is_floating_point() else t for t in _batch(n=16, ds=32, scale=scale))
    s1[3] = s1[5]  # duplicate target points
    c1[2] = c1[4]
    params = [t.requires_grad_() for t in (c1, c2, s1, s2)]
    total = SepCLRLoss.from_preset("natural")(*params, y)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in params)


def test_far_apart_salient_uniformity_uses_logsumexp():
    # official exp().mean().log() underflows to -inf here; ours is the exact -min distance + log(count)
    s = torch.tensor([[0.0], [100.0], [300.0]], dtype=torch.float64)
    want = -(100.0**2) + math.log(1 + math.exp(-(200.0**2) + 100.0**2) + math.exp(-(300.0**2) + 100.0**2)) - math.log(3)
    assert UniformityLoss()(s).item() == pytest.approx(want)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_missing_group_raises(labels):
    c1, c2, s1, s2, _ = _batch(n=4)
    with pytest.raises(ValueError, match="no (target|background)"):
        SepCLRLoss()(c1, c2, s1, s2, torch.tensor(labels))


def test_shape_errors_name_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(5, 3\)"):
        AlignmentLoss()(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="different batch sizes"):
        SepCLRLoss()(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(5, 2), torch.zeros(5, 2), torch.tensor([0, 1, 0, 1]))


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown SepCLR preset"):
        SepCLRLoss.from_preset("nope")
