"""``medcl ecg evaluate``: whole-test-fold AUROC with bootstrap CIs, per branch and fused.

The whole test fold (PTB-XL fold 10) is scored at once (no per-batch averaging, no subsets):
macro and weighted AUROC with bootstrap 95% intervals, per-class AUROC, for the model's output
head ("fused") and for each branch on its own labels. Classes without both outcomes in the test
fold are excluded and counted. Per-class thresholds are chosen on the validation fold (max F1)
and the thresholded F1 is reported on the test fold. Writes ``results.json`` and ``per_class.csv``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from medcl.metrics.auroc import auroc_summary, best_f1_thresholds, f1_scores
from medcl.nets.protoecg import BRANCHES
from medcl.utils import atomic_write_path, write_json

__all__ = ["evaluate"]


def _f1_block(y_val: np.ndarray, p_val: np.ndarray, y_test: np.ndarray, p_test: np.ndarray,
              labels: list[str]) -> dict[str, Any]:
    thr = best_f1_thresholds(y_val, p_val)
    f1 = f1_scores(y_test, p_test, thr)
    valid = y_test.sum(axis=0) > 0
    return {
        "thresholds": dict(zip(labels, thr.tolist())),
        "per_class_f1": {c: (None if np.isnan(v) else float(v)) for c, v in zip(labels, f1)},
        "macro_f1": float(np.nanmean(f1[valid])) if valid.any() else None,
    }


def evaluate(checkpoint: str | os.PathLike, data_root: str | os.PathLike, out_dir: str | os.PathLike,
             n_boot: int = 1000, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    """Evaluate an ``ecg`` checkpoint on ``data_root``'s test fold; returns the results dict."""
    from medcl.pipelines.ecg_train import ECGData, label_groups, load_model, predict_split

    net, cfg, labels, extra = load_model(checkpoint)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(data_root)})})
    from medcl.data.ptbxl import PTBXL

    d = cfg.data
    ptbxl = PTBXL(d.root, fs=d.fs, label_set="all", n_samples=d.n_samples, highpass=d.highpass,
                  cache_dir=d.cache_dir)
    data = ECGData(ptbxl, labels, label_groups(labels))
    head = extra.get("head", "branches")
    p_test, b_test, y_test = predict_split(net, data, "test", head, batch_size, with_branches=True)
    p_val, _, y_val = predict_split(net, data, "val", head, batch_size, with_branches=True)
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "data_root": str(data_root), "head": head,
                               "fused": auroc_summary(y_test, p_test, labels, n_boot=n_boot, seed=seed)}
    results["fused"].update(_f1_block(y_val, p_val, y_test, p_test, labels))
    results["branches"] = {}
    for b in BRANCHES:
        idx = data.groups[b]
        names = [labels[i] for i in idx]
        results["branches"][b] = auroc_summary(y_test[:, idx], b_test[:, idx], names, n_boot=n_boot, seed=seed)
    out = Path(out_dir)
    write_json(out / "results.json", results)
    _write_per_class(out / "per_class.csv", results, labels, y_test)
    return results


def _write_per_class(path: Path, results: dict[str, Any], labels: list[str], y_test: np.ndarray) -> None:
    owner = {c: b for b in BRANCHES for c in results["branches"][b]["per_class"]}
    fused = results["fused"]
    with atomic_write_path(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["code", "branch", "n_test_positives", "auroc_fused", "auroc_branch", "threshold", "f1_test"])
        for j, c in enumerate(labels):
            b = owner.get(c, "")
            w.writerow([c, b, int(y_test[:, j].sum()), fused["per_class"][c],
                        results["branches"][b]["per_class"].get(c) if b else None,
                        fused["thresholds"][c], fused["per_class_f1"][c]])
