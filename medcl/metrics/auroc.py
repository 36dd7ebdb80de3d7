"""Multi-label AUROC with bootstrap confidence intervals, and per-class F1 thresholds.

AUROC is computed from ranks (Mann-Whitney U with mid-ranks for ties, identical to
``sklearn.metrics.roc_auc_score``), vectorised over classes and bootstrap replicates. Classes
without both outcomes have no AUROC: they are excluded from the macro/weighted means and counted.
Bootstrap: resample records with replacement (percentile interval), excluding, per replicate, the
classes that lost one outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = ["auroc", "auroc_summary", "best_f1_thresholds", "f1_scores"]


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must both be (N, C); got {y.shape} and {s.shape}")
    return y.astype(bool), s


def _rank_auroc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC along axis -2 of ``(..., N, C)`` arrays; NaN where a class lacks an outcome."""
    ranks = rankdata(s, axis=-2)
    n_pos = y.sum(axis=-2)
    n_neg = y.shape[-2] - n_pos
    u = (ranks * y).sum(axis=-2) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def auroc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class AUROC ``(C,)`` of binary ``y_true`` ``(N, C)``; NaN for classes without both outcomes."""
    y, s = _check(y_true, scores)
    return _rank_auroc(y, s)


def _means(auc: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Macro and support-weighted means over the last axis, ignoring NaN classes."""
    valid = ~np.isnan(auc)
    a = np.where(valid, auc, 0.0)
    w = np.where(valid, support, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = a.sum(-1) / valid.sum(-1)
        weighted = (a * w).sum(-1) / w.sum(-1)
    return macro, weighted


def _bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.shape[0], size=(n_boot, y.shape[0]))
    macro, weighted = [], []
    for start in range(0, n_boot, chunk):
        rows = idx[start : start + chunk]
        yb = y[rows]
        m, w = _means(_rank_auroc(yb, s[rows]), yb.sum(axis=1))
        macro.append(m)
        weighted.append(w)
    return np.concatenate(macro), np.concatenate(weighted)


def _interval(values: np.ndarray, alpha: float) -> list[float | None]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [None, None]
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def auroc_summary(
    y_true: np.ndarray,
    scores: np.ndarray,
    names: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    chunk: int = 50,
) -> dict[str, Any]:
    """Macro and weighted AUROC with bootstrap ``1 - alpha`` intervals, plus per-class AUROC.

    Returns:
        ``{"macro": {"value", "ci"}, "weighted": {"value", "ci"}, "per_class": {name: auc|None},
        "n_classes_used", "excluded": [names without both outcomes], "n_records", "n_bootstrap",
        "alpha"}``.
    """
    y, s = _check(y_true, scores)
    names = list(names) if names is not None else [str(i) for i in range(y.shape[1])]
    per_class = _rank_auroc(y, s)
    macro, weighted = _means(per_class, y.sum(axis=0))
    boot_m, boot_w = _bootstrap(y, s, n_boot, seed, chunk) if n_boot > 0 else (np.array([]), np.array([]))
    return {
        "macro": {"value": _num(float(macro)), "ci": _interval(boot_m, alpha)},
        "weighted": {"value": _num(float(weighted)), "ci": _interval(boot_w, alpha)},
        "per_class": {n: _num(float(a)) for n, a in zip(names, per_class)},
        "n_classes_used": int((~np.isnan(per_class)).sum()),
        "excluded": [n for n, a in zip(names, per_class) if np.isnan(a)],
        "n_records": int(y.shape[0]),
        "n_bootstrap": int(n_boot),
        "alpha": alpha,
    }


def best_f1_thresholds(y_true: np.ndarray, scores: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-class threshold maximising F1 (predict positive when ``score >= threshold``).

    Every distinct score of a class is a candidate; classes without positives get ``default``.
    Vectorised over classes: scores are sorted once and TP/FP counted cumulatively.
    """
    y, s = _check(y_true, scores)
    order = np.argsort(-s, axis=0, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=0)
    tp = np.cumsum(np.take_along_axis(y, order, axis=0), axis=0)
    predicted = np.arange(1, y.shape[0] + 1)[:, None]
    f1 = 2 * tp / (predicted + y.sum(axis=0, keepdims=True))
    # only the last row of a run of tied scores is a reachable cut
    last_of_tie = np.ones_like(s_sorted, dtype=bool)
    last_of_tie[:-1] = s_sorted[:-1] != s_sorted[1:]
    f1 = np.where(last_of_tie, f1, -1.0)
    best = f1.argmax(axis=0)
    thr = s_sorted[best, np.arange(y.shape[1])]
    return np.where(y.sum(axis=0) > 0, thr, default)


def f1_scores(y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-class F1 of ``scores >= thresholds``; NaN for classes with no positives and no predictions."""
    y, s = _check(y_true, scores)
    pred = s >= np.asarray(thresholds)[None, :]
    tp = (pred & y).sum(axis=0)
    denom = pred.sum(axis=0) + y.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)
