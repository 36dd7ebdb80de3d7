"""The three AUROC estimators against literal re-computations (sklearn, a Lightning test loop)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from medcl.errors import MedclError
from medcl.metrics.estimators import batchwise_auroc, estimate, rejection_bootstrap_indices, select_classes


@pytest.fixture(scope="module")
def table():
    """A fixed prediction table: 150 records (last batch of 22), 6 classes, one rare and one empty."""
    rng = np.random.default_rng(7)
    y = (rng.random((150, 6)) < [0.3, 0.1, 0.5, 0.04, 0.0, 0.2]).astype(int)
    y[[5, 90], 3] = 1  # class 3: a handful of positives, absent from most batches
    s = np.round(0.5 * y + rng.random(y.shape), 2)  # ties included
    return y, s


class _Replay(L.LightningModule):
    """The reference's ``test_step``: per-batch macro AUROC over classes with both outcomes, logged."""

    def test_step(self, batch):
        s, y = batch
        aucs = [roc_auc_score(y[:, i].numpy(), s[:, i].numpy()) for i in range(y.shape[1])
                if not (np.all(y[:, i].numpy() == 0) or np.all(y[:, i].numpy() == 1))]
        self.log("test_auc", float(np.mean(aucs)) if aucs else float("nan"))


def test_reference_batchwise_equals_the_reference_loop_logged_by_lightning(table):
    y, s = table
    ds = TensorDataset(torch.as_tensor(s, dtype=torch.float64), torch.as_tensor(y))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.test(_Replay(), DataLoader(ds, batch_size=32, shuffle=False), verbose=False)[0]["test_auc"]
    ours = estimate(y, s, list("abcdef"), "reference-batchwise")
    assert ours["macro"]["n_batches"] == 5 and ours["macro"]["n_batches_skipped"] == 0
    assert ours["macro"]["value"] == pytest.approx(logged, abs=1e-6)
    # and by hand: size-weighted mean of per-batch macro AUROC
    vals, w = [], []
    for b in range(0, 150, 32):
        yb, sb = y[b : b + 32], s[b : b + 32]
        vals.append(np.mean([roc_auc_score(yb[:, c], sb[:, c]) for c in range(6) if 0 < yb[:, c].sum() < len(yb)]))
        w.append(len(yb))
    assert ours["macro"]["value"] == pytest.approx(np.average(vals, weights=w), abs=1e-12)
    # differs from the full-fold number on the same table
    assert abs(ours["macro"]["value"] - estimate(y, s, list("abcdef"), n_boot=0)["macro"]["value"]) > 1e-3


def test_full_fold_equals_sklearn_macro_over_selected_classes(table):
    y, s = table
    names = list("abcdef")
    res = estimate(y, s, names, "full-fold", n_boot=200, seed=1)
    assert res["excluded"] == ["e"]  # no positives
    assert res["macro"]["value"] == pytest.approx(roc_auc_score(y[:, [0, 1, 2, 3, 5]], s[:, [0, 1, 2, 3, 5]],
                                                                average="macro"), abs=1e-12)
    lo, hi = res["macro"]["ci"]
    assert lo < res["macro"]["value"] < hi
    strict = estimate(y, s, names, "full-fold", min_positives=8, n_boot=0)
    assert int(y[:, 3].sum()) < 8 and "d" in strict["excluded"] and strict["per_class"]["d"] is None
    assert strict["macro"]["value"] == pytest.approx(roc_auc_score(y[:, [0, 1, 2, 5]], s[:, [0, 1, 2, 5]]), abs=1e-12)
    assert strict["per_class"]["c"] == pytest.approx(roc_auc_score(y[:, 2], s[:, 2]), abs=1e-12)


def test_hand_made_table():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.1, 0.8], [0.4, 0.3], [0.5, 0.1]])
    # class 0: positives 0.9, 0.4 vs negatives 0.1, 0.5 -> pairs won 2 + 1 of 4 = 0.75; class 1: 0.8, 0.3 vs 0.2, 0.1 -> 1
    res = estimate(y, s, ["x", "z"], n_boot=0)
    assert res["per_class"] == {"x": 0.75, "z": 1.0} and res["macro"]["value"] == 0.875
    # batches of 2: rows 0-1 rank both classes perfectly (1.0); rows 2-3: class 0 inverted (0), class 1 right (1)
    assert batchwise_auroc(y, s, batch_size=2) == {"value": 0.75, "n_batches": 2, "n_batches_skipped": 0,
                                                   "batch_size": 2}
    # batches of 1 never hold both outcomes: every batch skipped, no value
    assert batchwise_auroc(y, s, batch_size=1)["value"] is None


def test_ptbxl_benchmark_draws_only_replicates_with_every_class(table):
    y, s = table
    keep = select_classes(y, 2)
    idx = rejection_bootstrap_indices(y[:, keep], 300, seed=4)
    assert idx.shape == (300, 150)
    assert (y[:, keep][idx].sum(axis=1) > 0).all()
    # a plain bootstrap of the same table would lose the rare class in some replicates
    plain = np.random.default_rng(4).integers(0, 150, size=(300, 150))
    assert (y[plain, 3].sum(axis=1) == 0).any()
    res = estimate(y, s, list("abcdef"), "ptbxl-benchmark", min_positives=2, n_boot=300, seed=4)
    assert res["macro"]["level"] == 0.90
    boot = [np.mean([roc_auc_score(y[r][:, c], s[r][:, c]) for c in np.flatnonzero(keep)]) for r in idx]
    assert res["macro"]["ci"] == pytest.approx(list(np.quantile(boot, [0.05, 0.95])), abs=1e-12)
    assert res["macro"]["value"] == pytest.approx(estimate(y, s, list("abcdef"), min_positives=2, n_boot=0)
                                                  ["macro"]["value"], abs=1e-12)


def test_impossible_rejection_sampling_is_one_clear_error():
    y = np.zeros((200, 2), int)
    y[0, 0] = y[1, 1] = 1  # one positive each: a replicate holds both with probability ~0.4
    with pytest.raises(MedclError, match="min-positives"):
        rejection_bootstrap_indices(y, 100, max_draws=100)


def test_unknown_estimator():
    with pytest.raises(MedclError, match="--estimator"):
        estimate(np.eye(4, 2), np.eye(4, 2), ["a", "b"], "batch")
