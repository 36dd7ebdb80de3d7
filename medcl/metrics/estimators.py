"""Three estimators of multi-label macro AUROC, so that numbers from different papers line up.

- ``full-fold`` (default, the better estimator): per-class AUROC on the whole evaluated set,
  macro mean over the classes with at least ``min_positives`` positives and one negative, with a
  plain bootstrap percentile interval (:func:`medcl.metrics.auroc.auroc_summary`).
- ``reference-batchwise``: what the ProtoECGNet reference code logs as ``test_auc`` (Sethi et al.,
  2025): the records are cut, in order, into batches of 32; each batch gets the macro AUROC over
  the classes that have both outcomes *in that batch*; Lightning's epoch reduction then averages
  the batch values weighted by batch size. Not comparable with full-fold AUROC (small batches
  drop rare classes and rank only within a batch). A batch where no class has both outcomes
  (the reference would log NaN) is skipped and counted.
- ``ptbxl-benchmark``: Strodthoff et al. (2021), "Deep learning for ECG analysis: benchmarks and
  insights from PTB-XL": point estimate on the whole set, and a bootstrap whose replicates are
  drawn by rejection sampling (a replicate is kept only when every class has a positive), with a
  90% percentile interval (5th / 95th percentiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from medcl.errors import MedclError
from medcl.metrics.auroc import _means, _num, _rank_auroc, auroc_summary

__all__ = ["ESTIMATORS", "batchwise_auroc", "estimate", "rejection_bootstrap_indices", "select_classes"]

Estimator = Literal["full-fold", "reference-batchwise", "ptbxl-benchmark"]
ESTIMATORS: tuple[str, ...] = ("full-fold", "reference-batchwise", "ptbxl-benchmark")


def select_classes(y_true: np.ndarray, min_positives: int = 1) -> np.ndarray:
    """Boolean mask of classes with at least ``min_positives`` positives and at least one negative."""
    y = np.asarray(y_true).astype(bool)
    pos = y.sum(axis=0)
    return (pos >= max(min_positives, 1)) & (pos < y.shape[0])


def batchwise_auroc(y_true: np.ndarray, scores: np.ndarray, batch_size: int = 32) -> dict[str, Any]:
    """The reference's logged AUROC: size-weighted mean over consecutive batches of per-batch macro AUROC.

    Returns ``{"value", "n_batches", "n_batches_skipped", "batch_size"}``.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    values, weights = [], []
    for start in range(0, len(y), batch_size):
        auc = _rank_auroc(y[start : start + batch_size], s[start : start + batch_size])
        if np.isfinite(auc).any():
            values.append(float(np.nanmean(auc)))
            weights.append(len(y[start : start + batch_size]))
    n_batches = -(-len(y) // batch_size)
    value = float(np.average(values, weights=weights)) if values else None
    return {"value": value, "n_batches": n_batches, "n_batches_skipped": n_batches - len(values),
            "batch_size": batch_size}


def rejection_bootstrap_indices(y_true: np.ndarray, n_boot: int, seed: int = 0,
                                max_draws: int | None = None) -> np.ndarray:
    """``(n_boot, N)`` resampled row indices, each replicate holding a positive of every class.

    Raises:
        MedclError: when ``max_draws`` (default ``100 * n_boot``) draws give too few replicates.
    """
    y = np.asarray(y_true).astype(bool)
    rng = np.random.default_rng(seed)
    max_draws = max_draws or 100 * max(n_boot, 1)
    kept: list[np.ndarray] = []
    draws = 0
    while len(kept) < n_boot:
        if draws >= max_draws:
            raise MedclError(f"ptbxl-benchmark bootstrap: only {len(kept)} of {n_boot} replicates held every "
                             f"class in {draws} draws; raise --min-positives")
        rows = rng.integers(0, len(y), size=len(y))
        draws += 1
        if y[rows].sum(axis=0).min() > 0:
            kept.append(rows)
    return np.stack(kept) if kept else np.zeros((0, len(y)), dtype=np.int64)


def _interval(values: np.ndarray, level: float) -> list[float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [None, None]
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def _ptbxl_benchmark(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    point, _ = _means(_rank_auroc(y, s), y.sum(axis=0))
    idx = rejection_bootstrap_indices(y, n_boot, seed)
    boot = np.array([_means(_rank_auroc(y[r], s[r]), y[r].sum(axis=0))[0] for r in idx])
    return {"value": _num(float(point)), "ci": _interval(boot, 0.90), "level": 0.90,
            "bootstrap_mean": _num(float(boot.mean())) if boot.size else None, "n_bootstrap": int(n_boot)}


def estimate(y_true: np.ndarray, scores: np.ndarray, names: Sequence[str], estimator: Estimator = "full-fold",
             min_positives: int = 1, n_boot: int = 1000, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Macro AUROC of ``scores`` by ``estimator`` over the classes with ``>= min_positives`` positives.

    Returns ``{"estimator", "macro": {"value", "ci", ...}, "per_class": {name: auc|None},
    "classes": [used names], "excluded": [names], "min_positives", "n_records"}``; ``per_class`` is
    always the full-set AUROC (``None`` for excluded classes).
    """
    if estimator not in ESTIMATORS:
        raise MedclError(f"--estimator: unknown value {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    names = list(names)
    keep = select_classes(y, min_positives)
    yk, sk = y[:, keep], s[:, keep]
    if estimator == "full-fold":
        full = auroc_summary(yk, sk, [n for n, k in zip(names, keep) if k], n_boot=n_boot, seed=seed)
        macro = {**full["macro"], "level": 0.95}
    elif estimator == "reference-batchwise":
        macro = batchwise_auroc(yk, sk, batch_size)
    else:
        macro = _ptbxl_benchmark(yk, sk, n_boot, seed) if keep.any() else {"value": None, "ci": [None, None]}
    per_class = _rank_auroc(y, s)
    extra = {"weighted": full["weighted"]} if estimator == "full-fold" else {}
    return {
        **extra,
        "estimator": estimator,
        "macro": macro,
        "per_class": {n: (_num(float(a)) if k else None) for n, a, k in zip(names, per_class, keep)},
        "classes": [n for n, k in zip(names, keep) if k],
        "excluded": [n for n, k in zip(names, keep) if not k],
        "n_classes_used": int(keep.sum()),
        "min_positives": int(min_positives),
        "n_records": int(y.shape[0]),
    }
