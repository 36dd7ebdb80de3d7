"""AUROC with bootstrap CIs and F1 thresholds against scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from medcl.metrics.auroc import auroc, auroc_summary, best_f1_thresholds, f1_scores


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.random((200, 5)) < [0.1, 0.3, 0.5, 0.0, 0.2]
    s = np.round(y * 0.6 + rng.random((200, 5)), 1)  # rounding creates ties
    return y.astype(int), s


def test_auroc_matches_sklearn_with_ties(data):
    y, s = data
    ours = auroc(y, s)
    for c in (0, 1, 2, 4):
        assert np.isclose(ours[c], roc_auc_score(y[:, c], s[:, c]), atol=1e-12)
    assert np.isnan(ours[3])  # no positives


def test_summary_excludes_and_counts_classes(data):
    y, s = data
    out = auroc_summary(y, s, names=list("abcde"), n_boot=200, seed=1)
    assert out["excluded"] == ["d"] and out["n_classes_used"] == 4
    valid = [0, 1, 2, 4]
    macro = np.mean([roc_auc_score(y[:, c], s[:, c]) for c in valid])
    weighted = roc_auc_score(y[:, valid], s[:, valid], average="weighted")
    assert np.isclose(out["macro"]["value"], macro)
    assert np.isclose(out["weighted"]["value"], weighted)
    lo, hi = out["macro"]["ci"]
    assert lo < macro < hi and hi - lo < 0.2
    assert out["per_class"]["d"] is None


def test_bootstrap_is_reproducible_and_plain_equivalent(data):
    y, s = data
    a = auroc_summary(y, s, n_boot=30, seed=3, chunk=7)
    b = auroc_summary(y, s, n_boot=30, seed=3, chunk=30)
    assert a["macro"]["ci"] == b["macro"]["ci"]
    # plain per-replicate loop with the same resamples
    idx = np.random.default_rng(3).integers(0, len(y), size=(30, len(y)))
    plain = []
    for rows in idx:
        aucs = [roc_auc_score(y[rows, c], s[rows, c]) for c in range(5) if 0 < y[rows, c].sum() < len(rows)]
        plain.append(np.mean(aucs))
    assert np.allclose(np.quantile(plain, [0.025, 0.975]), a["macro"]["ci"])


def test_best_f1_thresholds_brute_force(data):
    y, s = data
    thr = best_f1_thresholds(y, s)
    for c in (0, 1, 2, 4):
        best = max(f1_score(y[:, c], s[:, c] >= t) for t in np.unique(s[:, c]))
        assert np.isclose(f1_score(y[:, c], s[:, c] >= thr[c]), best)
    assert thr[3] == 0.5
    f1 = f1_scores(y, s, thr)
    assert np.isclose(f1[1], f1_score(y[:, 1], s[:, 1] >= thr[1]))
