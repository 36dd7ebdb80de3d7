"""Lead x time attributions of ECG findings with captum's Integrated Gradients.

Integrated Gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic Attribution for Deep
Networks", ICML) integrates the gradient of one class logit along the straight path from a
baseline (a flat 0 mV ECG) to the input; the result has the input's shape ``(12, T)`` and sums to
the logit difference (completeness).

The integration points and weights are captum's (``approximation_parameters``, Gauss-Legendre by
default), so the result equals ``captum.attr.IntegratedGradients``; the difference is the batching:
a record with several findings has its integration path run forward once, and the gradients of
its findings are taken from that one graph (``retain_graph``), instead of one forward per (record,
finding) pair. Records' paths share a forward pass up to ``internal_batch_size`` samples when
they have the same number of findings; the k-th backward pass serves the k-th finding of every
record in the chunk at once (samples are independent in eval mode, the assumption captum's own
batching makes). With F findings per record this costs one forward + F backward passes instead of
F of each. On CPU the chunks run in parallel threads with one intra-op thread each
(:func:`medcl.engine.parallel.map_batches`): a few cores are used better by independent chunks
than by splitting each small convolution across threads (on a loaded 2-core machine, one record's
IG with 2 intra-op threads took about 3x the CPU time of two 1-thread chunks). When there are
fewer chunks than threads (a report of one or two ECGs), each record's integration steps are
split over the threads and the weighted gradient sums of the parts are added: the same sum in
another order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from medcl.io.ecg import LEADS

Forward = Callable[[torch.Tensor], torch.Tensor]


def integrated_gradients(
    forward: Forward,
    signals: torch.Tensor,
    record_index: Sequence[int],
    class_index: Sequence[int],
    n_steps: int = 32,
    internal_batch_size: int = 64,
    method: str = "gausslegendre",
    threads: int | None = None,
) -> np.ndarray:
    """Attribute class logits to the input samples for a batch of (record, class) pairs.

    Args:
        forward: maps ``(N, 12, T)`` signals to ``(N, C)`` logits (a model in eval mode).
        signals: ``(B, 12, T)`` float tensor of the batch's ECGs (on the model's device).
        record_index: for each pair, the row of ``signals``.
        class_index: for each pair, the logit column to explain.
        n_steps: integration steps.
        internal_batch_size: most path samples per forward pass (at least one record's ``n_steps``).
        method: captum's approximation method (``gausslegendre`` default, ``riemann_trapezoid``, ...).
        threads: on CPU, chunks run in this many threads with one intra-op thread each (default:
            ``torch.get_num_threads()``); eval-mode chunks are independent, so the result is the same.

    Returns:
        float32 array ``(P, 12, T)`` of attributions (P pairs); empty when there are no pairs.
    """
    if len(record_index) != len(class_index):
        raise ValueError(f"record_index has {len(record_index)} entries but class_index {len(class_index)}")
    if len(record_index) == 0:
        return np.zeros((0, *signals.shape[1:]), np.float32)
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    weights = torch.tensor(step_sizes(n_steps), dtype=torch.float32, device=signals.device)
    alpha = torch.tensor(alphas(n_steps), dtype=torch.float32, device=signals.device)
    targets: dict[int, list[tuple[int, int]]] = {}
    for pair, (r, c) in enumerate(zip(record_index, class_index)):
        targets.setdefault(int(r), []).append((pair, int(c)))
    n_threads = torch.get_num_threads() if threads is None else threads
    parallel = signals.device.type == "cpu" and n_threads > 1
    chunks = _chunks(targets, n_steps, internal_batch_size, n_threads if parallel else 1)
    out = np.zeros((len(record_index), *signals.shape[1:]), np.float32)
    x_all = signals.detach().float()

    def run_chunk(chunk: tuple[list[int], slice]) -> list[tuple[int, torch.Tensor]]:
        records, steps = chunk
        x = x_all[records]  # (R, 12, T); baseline is 0 mV
        a, w = alpha[steps], weights[steps]
        path = (a[None, :, None, None] * x[:, None]).reshape(-1, *x.shape[1:]).requires_grad_(True)
        slots = max(len(targets[r]) for r in records)
        done = []
        with torch.enable_grad():
            logits = forward(path).reshape(len(records), len(a), -1)  # (R, S, C)
            for k in range(slots):
                jobs = [(i, *targets[r][k]) for i, r in enumerate(records) if k < len(targets[r])]
                total = sum(logits[i, :, c].sum() for i, _, c in jobs)
                (grad,) = torch.autograd.grad(total, path, retain_graph=k + 1 < slots)
                g = grad.reshape(len(records), len(a), *x.shape[1:])
                done += [(pair, torch.tensordot(w, g[i], dims=1).detach()) for i, pair, _ in jobs]
        return done

    from medcl.engine.parallel import map_batches

    sums: dict[int, torch.Tensor] = {}
    for done in map_batches(run_chunk, chunks, n_threads if parallel and len(chunks) > 1 else 1):
        for pair, part in done:  # a record's steps may be split over chunks: sum their weighted gradients
            sums[pair] = part if pair not in sums else sums[pair] + part
    row = {pair: r for r, jobs in targets.items() for pair, _ in jobs}
    for pair, total in sums.items():
        out[pair] = (x_all[row[pair]] * total).cpu().numpy()
    return out


def _chunks(
    targets: dict[int, list[tuple[int, int]]], n_steps: int, internal_batch_size: int, threads: int
) -> list[tuple[list[int], slice]]:
    """Work units ``(records, steps)`` of at most ``internal_batch_size`` path samples.

    Only records with equal finding counts share a unit (their k-th findings share a backward
    pass). When there are fewer units than ``threads`` (one or two reports on a multi-core CPU),
    each record's integration steps are split into parts so that every thread has work: the
    weighted gradient sum over steps is then added up over the parts (same sum, other order).
    """
    per_chunk = max(1, internal_batch_size // n_steps)
    by_count: dict[int, list[int]] = {}
    for r, jobs in targets.items():
        by_count.setdefault(len(jobs), []).append(r)
    groups = [rs[s : s + per_chunk] for rs in by_count.values() for s in range(0, len(rs), per_chunk)]
    parts = min(n_steps, -(-threads // len(groups))) if len(groups) < threads else 1
    bounds = np.linspace(0, n_steps, parts + 1).round().astype(int)
    return [(g, slice(int(a), int(b))) for g in groups for a, b in zip(bounds[:-1], bounds[1:])]


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
