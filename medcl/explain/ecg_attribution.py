"""Lead x time attributions of ECG findings with captum's Integrated Gradients.

Integrated Gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic Attribution for Deep
Networks", ICML) integrates the gradient of one class logit along the straight path from a
baseline (a flat 0 mV ECG) to the input; the result has the input's shape ``(12, T)`` and sums to
the logit difference (completeness). Every (record, finding) pair of a report batch is attributed
in one captum call, chunked by ``internal_batch_size``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from captum.attr import IntegratedGradients

from medcl.io.ecg import LEADS

Forward = Callable[[torch.Tensor], torch.Tensor]


def integrated_gradients(
    forward: Forward,
    signals: torch.Tensor,
    record_index: Sequence[int],
    class_index: Sequence[int],
    n_steps: int = 32,
    internal_batch_size: int = 64,
) -> np.ndarray:
    """Attribute class logits to the input samples for a batch of (record, class) pairs.

    Args:
        forward: maps ``(N, 12, T)`` signals to ``(N, C)`` logits (a model in eval mode).
        signals: ``(B, 12, T)`` float tensor of the batch's ECGs (on the model's device).
        record_index: for each pair, the row of ``signals``.
        class_index: for each pair, the logit column to explain.
        n_steps: integration steps (Gauss-Legendre).
        internal_batch_size: forward/backward chunk size inside captum.

    Returns:
        float32 array ``(P, 12, T)`` of attributions (P pairs); empty when there are no pairs.
    """
    if len(record_index) != len(class_index):
        raise ValueError(f"record_index has {len(record_index)} entries but class_index {len(class_index)}")
    if len(record_index) == 0:
        return np.zeros((0, *signals.shape[1:]), np.float32)
    rows = torch.as_tensor(list(record_index), dtype=torch.long, device=signals.device)
    target = torch.as_tensor(list(class_index), dtype=torch.long, device=signals.device)
    inputs = signals.detach()[rows].float()
    ig = IntegratedGradients(forward)
    with torch.enable_grad():
        attr = ig.attribute(
            inputs,
            baselines=torch.zeros_like(inputs),
            target=target,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
        )
    return attr.detach().float().cpu().numpy()


def region_mass(attr: np.ndarray, leads: Sequence[int], start: int, end: int) -> np.ndarray:
    """Fraction of the absolute attribution that falls in ``leads`` x samples ``[start, end)``.

    Args:
        attr: ``(..., 12, T)`` attributions.

    Returns:
        Array of shape ``attr.shape[:-2]``; compare with the uniform share
        ``len(leads) * (end - start) / (12 * T)``.
    """
    mag = np.abs(attr)
    inside = mag[..., list(leads), start:end].sum(axis=(-2, -1))
    return inside / np.maximum(mag.sum(axis=(-2, -1)), np.finfo(np.float32).tiny)


def peak_window(attr: np.ndarray, width: int) -> int:
    """Start sample of the ``width``-sample window holding the most absolute attribution (all leads)."""
    per_t = np.abs(attr).sum(axis=0)
    width = min(width, per_t.size)
    sums = np.convolve(per_t, np.ones(width), mode="valid")
    return int(np.argmax(sums))


def top_leads(attr: np.ndarray, start: int, end: int, k: int = 3) -> list[int]:
    """The ``k`` leads with the most absolute attribution in samples ``[start, end)``, in lead order."""
    mass = np.abs(attr[:, start:end]).sum(axis=-1)
    return sorted(np.argsort(-mass, kind="stable")[:k].tolist())


def summarise(attr: np.ndarray, fs: float, window_s: float = 1.0) -> dict:
    """JSON summary of one ``(12, T)`` attribution: per-lead share and the strongest window.

    Returns:
        ``{"lead_share": {lead: fraction of |attribution|}, "peak_window_s": [start, end]}``.
    """
    mag = np.abs(attr).sum(axis=-1)
    share = mag / max(float(mag.sum()), np.finfo(np.float32).tiny)
    width = max(1, int(round(window_s * fs)))
    start = peak_window(attr, width)
    return {
        "lead_share": {lead: round(float(s), 4) for lead, s in zip(LEADS, share)},
        "peak_window_s": [round(start / fs, 3), round(min(start + width, attr.shape[-1]) / fs, 3)],
    }
