"""``medcl ecg evaluate``: AUROC on the test fold by a chosen estimator, fused and per branch.

Estimators (:mod:`medcl.metrics.estimators`): ``full-fold`` (default: the whole test fold at once,
bootstrap 95% interval), ``reference-batchwise`` (the ProtoECGNet reference's logged ``test_auc``:
mean over batches of 32 of per-batch macro AUROC) and ``ptbxl-benchmark`` (Strodthoff et al. 2021:
rejection-sampled bootstrap, 90% interval). Classes with fewer than ``min_positives`` positives
(or no negative) in the test fold are excluded and listed.

Branch AUROC comes from where the branch was trained: after a ``classifier`` stage from the
branch heads; after ``fusion`` from the fused model's branch contribution (fusion weights times
that branch's similarities), because the branch heads were never trained then; after ``joint``
only from the fixed +1/-0.5 heads that joint training optimised against. Each branch entry says
which (``"source"``). Per-class thresholds are chosen on the validation fold (max F1) and the
thresholded F1 is reported on the test fold. Writes ``results.json`` and ``per_class.csv``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from medcl.metrics.auroc import best_f1_thresholds, f1_scores
from medcl.metrics.estimators import estimate
from medcl.nets.protoecg import BRANCHES
from medcl.utils import atomic_write_path, write_json

__all__ = ["BRANCH_SOURCES", "branch_source", "evaluate"]

BRANCH_SOURCES = {
    "head": "the branch classifier heads (trained in the classifier stage)",
    "contribution": "the fused model's branch contribution (fusion weights x this branch's similarities); "
                    "the branch heads were not trained",
    "fixed-head": "the fixed +1/-0.5 branch heads that the joint stage trained against",
}


def branch_source(extra: dict[str, Any]) -> str:
    """Which scores stand for a branch: ``"head"``, ``"contribution"`` or ``"fixed-head"``."""
    stages = extra.get("stages")
    if stages is None:  # checkpoints written before stages were recorded
        stages = ["fusion"] if extra.get("head") == "fusion" else []
    if "classifier" in stages:
        return "head"
    return "contribution" if "fusion" in stages else "fixed-head"


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
             n_boot: int = 1000, seed: int = 0, batch_size: int = 64, estimator: str = "full-fold",
             min_positives: int = 1) -> dict[str, Any]:
    """Evaluate an ``ecg`` checkpoint on ``data_root``'s test fold; returns the results dict."""
    from medcl.metrics.estimators import ESTIMATORS
    from medcl.pipelines.ecg_data import ECGData, load_data, predict_split
    from medcl.pipelines.ecg_model import label_groups, load_model

    if estimator not in ESTIMATORS:
        from medcl.errors import MedclError

        raise MedclError(f"--estimator: unknown value {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
    net, cfg, labels, extra = load_model(checkpoint)
    # caches live under MEDCL_CACHE_DIR (or the default), never at a path stored in the checkpoint
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": None})})
    d = cfg.data
    data = ECGData(load_data(cfg, root=str(data_root)).ptbxl, labels, label_groups(labels))
    head, source = extra.get("head", "branches"), branch_source(extra)
    p_test, b_test, y_test = predict_split(net, data, "test", head, batch_size, with_branches=True,
                                           branch_source="head" if source != "contribution" else source)
    p_val, y_val = predict_split(net, data, "val", head, batch_size)
    opts = {"estimator": estimator, "min_positives": min_positives, "n_boot": n_boot, "seed": seed}
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "data_root": str(data_root), "head": head,
                               "estimator": estimator, "min_positives": min_positives,
                               "normalize": d.normalize, "fused": estimate(y_test, p_test, labels, **opts)}
    results["fused"].update(_f1_block(y_val, p_val, y_test, p_test, labels))
    results["branch_source"] = BRANCH_SOURCES[source]
    results["branches"] = {}
    for b in BRANCHES:
        idx = data.groups[b]
        res = estimate(y_test[:, idx], b_test[:, idx], [labels[i] for i in idx], **opts)
        results["branches"][b] = {**res, "source": source}
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
