"""Integrated-Gradients attributions: exactness on linear models, per-pair targets, localisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medcl.explain.ecg_attribution import (
    integrated_gradients,
    peak_window,
    region_mass,
    summarise,
    top_leads,
)
from medcl.io.ecg import LEADS


class WindowModel(nn.Module):
    """Class c's logit = softplus(sum(mask_c * x)) ** 2: depends only on mask_c's leads x samples."""

    def __init__(self, masks: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("masks", masks.float())  # (C, 12, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(torch.einsum("blt,clt->bc", x, self.masks)) ** 2


def test_linear_model_attribution_equals_weight_times_input():
    torch.manual_seed(0)
    w = torch.randn(2, 12, 50, dtype=torch.float64)
    x = torch.randn(3, 12, 50, dtype=torch.float64)

    def linear(inp: torch.Tensor) -> torch.Tensor:
        return torch.einsum("blt,clt->bc", inp.double(), w)

    attr = integrated_gradients(linear, x, [0, 2, 2], [1, 0, 1], n_steps=8)
    expected = torch.stack([w[1] * x[0], w[0] * x[2], w[1] * x[2]]).numpy()
    np.testing.assert_allclose(attr, expected, rtol=1e-5, atol=1e-6)


def test_each_pair_is_attributed_to_its_own_class_window_and_completeness_holds():
    t = 200
    masks = torch.zeros(2, 12, t)
    masks[0, [7, 8, 9], 40:80] = 0.05  # class 0: V2-V4, samples 40-80
    masks[1, [0, 4], 150:190] = 0.05  # class 1: I and aVL, samples 150-190
    model = WindowModel(masks)
    x = torch.randn(2, 12, t, generator=torch.Generator().manual_seed(1)) + 1.0
    attr = integrated_gradients(model, x, [0, 1, 1], [0, 1, 0], n_steps=64, internal_batch_size=50)
    assert attr.shape == (3, 12, t)
    assert region_mass(attr[0], [7, 8, 9], 40, 80) == pytest.approx(1.0)
    assert region_mass(attr[1], [0, 4], 150, 190) == pytest.approx(1.0)
    assert region_mass(attr[2], [7, 8, 9], 40, 80) == pytest.approx(1.0)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).numpy()
    np.testing.assert_allclose(attr.sum(axis=(1, 2)), [gap[0, 0], gap[1, 1], gap[1, 0]], rtol=1e-3)


def test_no_pairs_and_mismatched_pairs():
    x = torch.zeros(1, 12, 10)
    assert integrated_gradients(lambda v: v.sum(-1), x, [], []).shape == (0, 12, 10)
    with pytest.raises(ValueError, match="record_index"):
        integrated_gradients(lambda v: v.sum(-1), x, [0], [])


def test_summaries_are_hand_computable():
    attr = np.zeros((12, 100))
    attr[1, 20:30] = 2.0  # lead II
    attr[6, 60:65] = -4.0  # lead V1
    attr[10, 90] = 1.0  # lead V5
    assert region_mass(attr, [1], 0, 100) == pytest.approx(20 / 41)
    assert peak_window(attr, 10) == 20  # first window reaching the top |sum| (20)
    assert top_leads(attr, 0, 100, k=2) == [1, 6]
    assert top_leads(attr, 85, 100, k=1) == [10]
    s = summarise(attr, fs=10.0, window_s=1.0)
    assert s["lead_share"]["II"] == pytest.approx(20 / 41, abs=1e-4)
    assert s["lead_share"]["V1"] == pytest.approx(20 / 41, abs=1e-4)
    assert set(s["lead_share"]) == set(LEADS)
    assert s["peak_window_s"] == [2.0, 3.0]


@pytest.mark.slow
def test_briefly_trained_model_attends_to_the_label_causing_leads_and_window():
    """Synthetic AMI = ST elevation in V2-V4 after each R peak: IG mass there beats the uniform share."""
    from medcl.data.synthetic.ecg import FS, generate, truth_mask
    from medcl.io.ecg import resample

    torch.manual_seed(0)
    torch.set_num_threads(2)
    batch = generate(112, seed=1)
    x = torch.from_numpy(resample(batch.signals, FS, 100).astype(np.float32))
    y = torch.tensor([("AMI" in labels) for labels in batch.labels], dtype=torch.float32)
    net = nn.Sequential(nn.Conv1d(12, 8, 8, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                        nn.Linear(8, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(60):
        idx = torch.randint(0, 96, (48,))
        loss = nn.functional.binary_cross_entropy_with_logits(net(x[idx])[:, 0], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    positives = [i for i in range(96, 112) if y[i]]
    assert positives
    attr = integrated_gradients(net, x, positives, [0] * len(positives), n_steps=32)
    masks = np.stack([truth_mask("AMI", batch.r_peaks_s[i], batch.t_offset_s[i], 100, 1000) for i in positives])
    mass = (np.abs(attr) * masks).sum(axis=(1, 2)) / np.abs(attr).sum(axis=(1, 2))
    uniform = masks.mean(axis=(1, 2))
    assert (mass > 2 * uniform).all(), (mass, uniform)


@pytest.mark.parametrize("internal_batch_size", [8, 64])
def test_shared_forward_batching_equals_captum_integrated_gradients(internal_batch_size):
    """Same alphas/weights as captum: one forward per record path, one backward per finding."""
    from captum.attr import IntegratedGradients

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(12, 8, 7, padding=3), nn.Tanh(), nn.Conv1d(8, 5, 5, padding=2),
                        nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    x = torch.randn(4, 12, 60)
    rows, cls = [0, 0, 0, 2, 3, 3], [1, 4, 0, 2, 2, 3]
    ours = integrated_gradients(net, x, rows, cls, n_steps=8, internal_batch_size=internal_batch_size)
    ref = IntegratedGradients(net).attribute(x[rows], baselines=torch.zeros_like(x[rows]),
                                             target=torch.tensor(cls), n_steps=8)
    np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_chunks_split_integration_steps_only_when_threads_would_idle():
    from medcl.explain.ecg_attribution import _chunks

    one = {0: [(0, 3), (1, 5)]}  # one record, two findings
    assert _chunks(one, 32, 64, threads=1) == [([0], slice(0, 32))]
    assert _chunks(one, 32, 64, threads=2) == [([0], slice(0, 16)), ([0], slice(16, 32))]
    assert _chunks(one, 8, 64, threads=3) == [([0], slice(0, 3)), ([0], slice(3, 5)), ([0], slice(5, 8))]
    many = {0: [(0, 1)], 1: [(1, 1)], 2: [(2, 1), (3, 2)], 3: [(4, 0)]}  # 2 findings only for record 2
    assert _chunks(many, 32, 64, threads=2) == [([0, 1], slice(0, 32)), ([3], slice(0, 32)), ([2], slice(0, 32))]


def test_split_and_batched_attributions_equal_one_pair_at_a_time():
    """Step-split over threads, all pairs batched, and one captum-style call per pair agree to 1e-6."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(12, 8, 7, padding=3), nn.Tanh(), nn.Conv1d(8, 5, 5, padding=2),
                        nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    x = torch.randn(2, 12, 80)
    rows, cls = [0, 0, 0, 1], [1, 4, 0, 2]
    single = np.stack([integrated_gradients(net, x[[r]], [0], [c], n_steps=16, threads=1)[0]
                       for r, c in zip(rows, cls)])
    batched = integrated_gradients(net, x, rows, cls, n_steps=16, threads=1)
    split = integrated_gradients(net, x, rows, cls, n_steps=16, threads=4)  # 2 groups x 2 step parts
    one_record_split = integrated_gradients(net, x[:1], [0, 0, 0], cls[:3], n_steps=16, threads=3)
    scale = np.abs(single).max()
    assert scale > 1e-3
    for got in (batched, split):
        np.testing.assert_allclose(got / scale, single / scale, rtol=0, atol=1e-6)
    np.testing.assert_allclose(one_record_split / scale, single[:3] / scale, rtol=0, atol=1e-6)
