"""ProtoECGNet loss terms against hand-computed values and the official code's formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcl.losses.prototype import (
    ClusterLoss,
    CooccurrenceContrastiveLoss,
    DiversityLoss,
    MaskedL1Loss,
    PrototypeLoss,
    SeparationLoss,
    jaccard_matrix,
    positive_weights,
    prototype_gram,
)
from medcl.nets.prototype import class_identity

torch.set_num_threads(2)


def reference_clst_sep(sims, y, identity):
    """Official prototype_loss1d/2d clustering and separation, written with explicit loops."""
    b_n, p_n = sims.shape
    c_n = y.shape[1]
    clst = sep = 0.0
    for b in range(b_n):
        for c in range(c_n):
            own = [float(sims[b, p]) * float(identity[p, c] * y[b, c]) for p in range(p_n)]
            wrong = [float(sims[b, p]) * (1.0 - float(identity[p, c] * y[b, c])) for p in range(p_n)]
            clst += max(own)
            sep += max(wrong)
    return -clst / (b_n * c_n), sep / (b_n * c_n)


def test_positive_weights_reference_formula():
    y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    # n = (3, 1, 2), total positives 6 -> (6 - n) / n
    torch.testing.assert_close(positive_weights(y), torch.tensor([1.0, 5.0, 2.0]))


def test_positive_weight_guard_for_empty_class():
    y = torch.tensor([[1, 0], [1, 0], [0, 0]])
    with pytest.warns(UserWarning, match=r"\['B'\]"):
        w = positive_weights(y, names=["A", "B"])
    assert torch.isfinite(w).all()
    assert w.tolist() == [0.0, 2.0]


def test_jaccard_hand_values():
    y = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    j = jaccard_matrix(y)
    assert math.isclose(float(j[0, 1]), 2 / 4)  # both in 2 records, either in 4
    assert float(j[0, 0]) == 1.0 and float(j[2, 2]) == 0.0  # class 2 never occurs: 0, not NaN
    torch.testing.assert_close(j, j.T)


def test_cluster_separation_hand_example():
    ident = class_identity(2, 1)  # prototype 0 -> class 0, prototype 1 -> class 1
    sims = torch.tensor([[0.8, 0.3]])
    y = torch.tensor([[1.0, 0.0]])
    # clustering: class 0 -> max(0.8, 0) = 0.8; class 1 absent -> max(0, 0) = 0; -mean = -0.4
    assert math.isclose(float(ClusterLoss()(sims, y, ident)), -0.4, rel_tol=1e-6)
    # separation: class 0 -> max(0, 0.3) = 0.3; class 1 absent -> max over all = 0.8; mean 0.55
    assert math.isclose(float(SeparationLoss()(sims, y, ident)), 0.55, rel_tol=1e-6)
    # ProtoPNet-style option: prototypes of absent classes only -> 0.3
    assert math.isclose(float(SeparationLoss("protopnet")(sims, y, ident)), 0.3, rel_tol=1e-6)


def test_cluster_separation_match_loop_reference():
    torch.manual_seed(0)
    ident = class_identity(4, 3)
    sims = torch.randn(6, 12, dtype=torch.float64)
    y = (torch.rand(6, 4) < 0.4).double()
    clst, sep = reference_clst_sep(sims, y, ident)
    assert math.isclose(float(ClusterLoss()(sims, y, ident)), clst, rel_tol=1e-12)
    assert math.isclose(float(SeparationLoss()(sims, y, ident)), sep, rel_tol=1e-12)
    with pytest.raises(ValueError, match="expected similarities"):
        ClusterLoss()(sims, y, class_identity(3, 4))


def test_diversity_zero_for_orthonormal_and_hand_value():
    q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    assert float(DiversityLoss()(q[:5] * 3.0)) < 1e-20  # scale does not matter (normalised)
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # Gram - I = [[0, 1], [1, 0]] -> ||.||_F^2 = 2, / P^2 = 4
    assert math.isclose(float(DiversityLoss()(p)), 0.5, rel_tol=1e-6)
    # 2D prototypes (P, D, 1, L) are flattened first
    assert math.isclose(float(DiversityLoss()(p.reshape(2, 1, 1, 2))), 0.5, rel_tol=1e-6)


def test_contrastive_hand_value():
    ident = class_identity(2, 1)
    cooc = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    protos = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # cosine 0.6
    s = torch.tensor([[1 - 1e-6, 0.6], [0.6, 1 - 1e-6]])
    pos = cooc
    neg = 1 - cooc
    expected = -(float((s * pos).sum() / (pos.sum() + 1e-6)) - float((s * neg).sum() / (neg.sum() + 1e-6))) / 2**0.5
    got = float(CooccurrenceContrastiveLoss(cooc)(protos, ident))
    assert math.isclose(got, expected, rel_tol=1e-5)


def test_contrastive_pulls_cooccurring_prototypes_together():
    torch.manual_seed(0)
    ident = class_identity(3, 2)
    cooc = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])  # classes 0 and 1 co-occur
    protos = torch.nn.Parameter(torch.randn(6, 16))
    loss_fn = CooccurrenceContrastiveLoss(cooc)

    def cos(a, b):
        return float(F.cosine_similarity(protos[a].detach(), protos[b].detach(), dim=0))

    before_pos, before_neg = cos(0, 2), cos(0, 4)
    opt = torch.optim.SGD([protos], lr=0.5)
    for _ in range(50):
        opt.zero_grad()
        loss_fn(protos, ident).backward()
        opt.step()
    assert cos(0, 2) > before_pos + 0.1  # class 0 vs class 1 prototypes: pulled together
    assert cos(0, 4) < before_neg  # class 0 vs class 2: pushed apart


def test_masked_l1():
    ident = class_identity(2, 1)
    w = torch.tensor([[2.0, -3.0], [0.5, 4.0]])
    assert float(MaskedL1Loss()(w, ident)) == 3.5  # off-class entries |-3| + |0.5|
    assert float(MaskedL1Loss()(w)) == 9.5


def test_prototype_loss_total_is_weighted_sum():
    torch.manual_seed(0)
    ident = class_identity(3, 2)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pw = positive_weights(torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0]]))
    loss = PrototypeLoss(pos_weight=pw, cooccurrence=jaccard_matrix(y))
    logits, sims, protos = torch.randn(2, 3), torch.rand(2, 6), torch.randn(6, 5)
    out = loss(logits, y, sims, protos, ident)
    bce = F.binary_cross_entropy_with_logits(logits, y, pos_weight=pw)
    assert math.isclose(float(out["bce"]), float(bce), rel_tol=1e-6)
    expected = (out["bce"] + 0.004 * out["clustering"] + 0.0004 * out["separation"] + 250 * out["diversity"]
                + 300 * out["contrastive"])
    assert math.isclose(float(out["loss"]), float(expected), rel_tol=1e-6)
    assert set(out) == {"loss", *PrototypeLoss.TERMS}  # terms spelled out in the logs
    with pytest.raises(TypeError):
        PrototypeLoss(pw)  # keyword-only
    with pytest.raises(ValueError, match="logits"):
        loss(logits[:, :2], y, sims, protos, ident)


def test_prototype_loss_shared_gram_matches_standalone_terms_float64():
    torch.manual_seed(1)
    ident = class_identity(4, 3).double()
    y = (torch.rand(5, 4) < 0.5).double()
    loss = PrototypeLoss(cooccurrence=jaccard_matrix(y)).double()
    protos = torch.randn(12, 6, 1, 3, dtype=torch.float64)
    out = loss(torch.randn(5, 4, dtype=torch.float64), y, torch.rand(5, 12, dtype=torch.float64), protos, ident)
    # one Gram matrix feeds both terms: each equals its standalone module's value
    assert math.isclose(float(out["diversity"]), float(DiversityLoss()(protos)), rel_tol=1e-12)
    cooc = jaccard_matrix(y).double()
    assert math.isclose(float(out["contrastive"]), float(CooccurrenceContrastiveLoss(cooc)(protos, ident)),
                        rel_tol=1e-12)
    gram = prototype_gram(protos)
    torch.testing.assert_close(gram, F.cosine_similarity(protos.flatten(1)[:, None], protos.flatten(1)[None], dim=2))


def test_protopnet_separation_skips_samples_carrying_every_class():
    ident = class_identity(2, 1)
    sims = torch.tensor([[0.8, 0.3], [0.9, 0.7]], requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # sample 1 lacks no class: skipped, not averaged as 0
    got = SeparationLoss("protopnet")(sims, y, ident)
    assert math.isclose(float(got.detach()), 0.3, rel_tol=1e-6)
    got.backward()
    assert sims.grad.tolist() == [[0.0, 1.0], [0.0, 0.0]]
    none_lacking = SeparationLoss("protopnet")(sims[1:], y[1:], ident)
    assert float(none_lacking.detach()) == 0.0


def _masked_terms(sims, y, identity, protos, cooc):
    """The terms as the reference writes them (``(B, P, C)`` masks, masks rebuilt every call):
    the oracle of the one-pass forms."""
    mask = identity[None] * y[:, None, :]
    clst = -(sims[:, :, None] * mask).amax(dim=1).mean()
    sep = (sims[:, :, None] * (1.0 - mask)).amax(dim=1).mean()
    p = F.normalize(protos.reshape(protos.shape[0], -1), dim=1)
    sim = (p @ p.T).clamp(-1 + 1e-6, 1 - 1e-6)
    pos = identity @ cooc @ identity.T
    neg = 1.0 - pos
    contrast = -((sim * pos / (pos.sum() + 1e-6)).sum() - (sim * neg / (neg.sum() + 1e-6)).sum()) / p.shape[0] ** 0.5
    return clst, sep, contrast


@pytest.mark.parametrize(("classes", "per_class", "shift"), [(5, 3, 0.0), (1, 4, 0.0), (4, 2, -3.0), (3, 5, 2.0)])
def test_one_pass_terms_equal_the_masked_reference_with_gradients_float64(classes, per_class, shift):
    torch.manual_seed(classes + per_class)
    ident = class_identity(classes, per_class).double()
    y = (torch.rand(7, classes) < 0.5).double()
    y[0] = 1.0  # a sample with every label
    y[1] = 0.0  # and one with none
    cooc = jaccard_matrix(y).double()
    sims = (torch.randn(7, classes * per_class, dtype=torch.float64) + shift).requires_grad_(True)
    protos = torch.randn(classes * per_class, 6, 1, 3, dtype=torch.float64, requires_grad=True)
    ours = (ClusterLoss()(sims, y, ident), SeparationLoss()(sims, y, ident),
            CooccurrenceContrastiveLoss(cooc).double()(protos, ident))
    theirs = _masked_terms(sims, y, ident, protos, cooc)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        ga = torch.autograd.grad(a, (sims, protos), allow_unused=True, materialize_grads=True)
        gb = torch.autograd.grad(b, (sims, protos), allow_unused=True, materialize_grads=True)
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_contrastive_pair_weights_are_kept_and_rebuilt_when_inputs_change():
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    term = CooccurrenceContrastiveLoss(jaccard_matrix(y)).double()
    ident = class_identity(3, 2).double()
    protos = torch.randn(6, 4, dtype=torch.float64)
    with torch.inference_mode():  # nothing kept from inference mode (it could not be saved for backward)
        term(protos, ident)
    assert term._weights is None
    first = term(protos, ident)
    kept = term._weights[2]
    assert term.pair_weights(ident, torch.float64) is kept
    term.load_state_dict({"cooccurrence": torch.eye(3)})  # new co-occurrence: new weights
    changed = term(protos, ident)
    assert term._weights[2] is not kept
    fresh = CooccurrenceContrastiveLoss(torch.eye(3)).double()(protos, ident)
    assert math.isclose(float(changed), float(fresh), rel_tol=1e-12)
    assert not math.isclose(float(first), float(changed), rel_tol=1e-6)


def test_prototype_gram_gradient_equals_autograd_mm_float64():
    torch.manual_seed(3)
    protos = torch.randn(9, 4, 1, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 9, dtype=torch.float64)  # not symmetric: both halves of the backward count
    gram = prototype_gram(protos)
    p = F.normalize(protos.reshape(9, -1), dim=1)
    plain = p @ p.T
    torch.testing.assert_close(gram, plain, rtol=1e-12, atol=1e-12)
    ours = torch.autograd.grad((gram * weight).sum(), protos)[0]
    theirs = torch.autograd.grad((plain * weight).sum(), protos)[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(prototype_gram, (protos[:4].detach().clone().requires_grad_(True),))
