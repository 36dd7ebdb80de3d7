"""ProtoECGNet on real PTB-XL ECGs: fused and per branch vs a plain 1D ResNet, three estimators.

Data: ``../shared/data/ecg/ptbxl-real-subset/`` (414 real PTB-XL ECGs with their labels, folds
1-9; the source kept them band-passed and z-scored per lead). Splits: ``strat_fold`` 1-7 train,
8 validation (early stopping, fusion epoch, thresholds), 9 test (held out). Both models use
``data.normalize=zscore`` so that they apply to records in mV as well.

1. ProtoECGNet: joint -> project -> fusion with the published recipe's options (dropout 0.35,
   weight decay 1.7e-4, cosine schedule, per-branch early stopping); each stage timed.
2. Baseline: :class:`~medcl.pipelines.ecg_baseline.ResNet1DClassifier` (no prototypes) with the
   same backbone width, split, normalisation and epochs as the joint stage.
3. Test fold: macro AUROC over the classes with >= ``--min-positives`` positives by the three
   estimators (:mod:`medcl.metrics.estimators`), per-class AUROC, for the fused model, each
   branch (the fused model's branch contribution on the branch's labels) and the baseline.
4. Cross-source: the same two models on the real mV records of ``challenge-mix/`` and
   ``cinc2021-sample/`` (SNOMED ``# Dx:`` mapped to SCP), AUROC where a class has enough positives.
5. Projection check: every projected prototype's source is a real training ECG of its class.

Writes ``OUT/ecg_real.json`` (through ``medcl bench``), ``OUT/checkpoints/ecg_real.ckpt``
(usable by ``medcl ecg predict/report/evaluate``) and the decoded-signal cache ``OUT/cache``. Without the shared data it returns ``{"skipped": why}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb

TARGETS = {"macro_auroc": 0.75, "afib_auroc": 0.90}
NAMED = ["AFIB", "SR", "NORM", "1AVB", "CLBBB", "CRBBB", "LVH", "IMI", "ASMI", "STACH", "SBRAD", "LAFB",
         "IRBBB", "ABQRS", "NDT"]
FOLDS = {"train": [1, 2, 3, 4, 5, 6, 7], "val": [8], "test": [9]}
SIZES = {  # quick: about 5 minutes of 2 idle cores; full: the published widths
    True: {"width": 32, "proto_dim": 128, "per_class": "{rhythm: 3, morphology: 3, global: 3}",
           "epochs": 20, "head_epochs": 10},
    False: {"width": 64, "proto_dim": 512, "per_class": "{rhythm: 5, morphology: 18, global: 7}",
            "epochs": 60, "head_epochs": 30},
}


def _default_data() -> Path:
    shared = Path(os.environ.get("MEDCL_SHARED_DATA", Path.cwd().parent / "shared" / "data"))
    return shared / "ecg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench ecg-real``."""
    parser.add_argument("--data", default=None,
                        help="PTB-XL-layout folder (default ../shared/data/ecg/ptbxl-real-subset)")
    parser.add_argument("--cross-source", nargs="*", default=None, metavar="FOLDER",
                        help="WFDB folders scored as a cross-source check (default challenge-mix and "
                             "cinc2021-sample beside the data)")
    parser.add_argument("--quick", action="store_true", help="narrow branches, 20 + 10 epochs (under 15 min)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--epochs", type=int, default=None, help="joint-stage and baseline epochs")
    parser.add_argument("--head-epochs", type=int, default=None, help="fusion-stage epochs")
    parser.add_argument("--width", type=int, default=None, help="ResNet width (64 = ResNet-18)")
    parser.add_argument("--min-positives", type=int, default=4, help="classes scored need this many positives")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra ECG config overrides")


def _config(args: argparse.Namespace, data: Path, out: Path):
    from medcl.config import load_config
    from medcl.pipelines.ecg import ECGConfig

    size = dict(SIZES[bool(args.quick)])
    size.update({k: v for k, v in (("epochs", args.epochs), ("head_epochs", args.head_epochs),
                                   ("width", args.width)) if v is not None})
    repo_config = Path(__file__).resolve().parents[2] / "configs" / "ecg" / "protoecgnet.yaml"
    overrides = [
        f"data.root={data}", f"data.cache_dir={out / 'cache'}", "data.normalize=zscore",
        f"data.folds={{train: {FOLDS['train']}, val: {FOLDS['val']}, test: {FOLDS['test']}}}",
        f"model.width={size['width']}", f"model.proto_dim={size['proto_dim']}",
        f"model.per_class={size['per_class']}", f"train.max_epochs={size['epochs']}",
        f"optim.head_epochs={size['head_epochs']}", "optim.lr=0.001", "optim.head_lr=0.01",
        "train.accelerator=cpu", "train.precision=32-true", "train.progress_bar=false", "train.loggers=[]",
        f"train.seed={args.seed}", *args.set,
    ]
    path = repo_config if repo_config.is_file() else None
    return load_config(ECGConfig, path, overrides), size


def _timed_stage(cfg, run: Path, stage: str, timing: dict[str, float]) -> Path:
    from medcl.pipelines.ecg import train

    start = time.perf_counter()
    ckpt = train(cfg, run, stages=(stage,))
    timing[stage] = time.perf_counter() - start
    return ckpt


def _score(y, p, labels: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The three estimators side by side plus the named classes' full-fold AUROC."""
    from medcl.metrics.estimators import ESTIMATORS, estimate

    res = {e: estimate(y, p, labels, e, min_positives=args.min_positives, n_boot=args.bootstrap, seed=args.seed)
           for e in ESTIMATORS}
    full = res["full-fold"]
    return {
        "macro": {e: r["macro"] for e, r in res.items()},
        "per_class": {c: full["per_class"].get(c) for c in NAMED if c in full["per_class"]},
        "per_class_all": full["per_class"],
        "classes": full["classes"],
        "n_records": full["n_records"],
    }


def _projection_check(extra: dict[str, Any], data, per_class: dict[str, int]) -> dict[str, Any]:
    """Are projected prototypes real training ECGs of their own class?"""
    from medcl.data.ptbxl import load_label_groups

    groups, train_ids = load_label_groups(), set(data.ptbxl.ecg_ids[data.ptbxl.split_indices("train")].tolist())
    total = found = own = in_train = 0
    for b, prov in (extra.get("projection") or {}).items():
        for j, labels in enumerate(prov["labels"]):
            total += 1
            if int(prov["sample"][j]) < 0:
                continue
            found += 1
            own += groups[b][j // per_class[b]] in labels
            in_train += int(prov["ecg_id"][j]) in train_ids
    return {"prototypes": total, "projected": found, "source_of_own_class": own,
            "source_in_training_folds": in_train,
            "all_projected_from_own_class_training_ecgs": found > 0 and own == found == in_train}


def _probs(model, x, fused: bool):
    """Sigmoid outputs of ``model`` on ``x`` ``(N, 12, T)`` in batches of 64."""
    import numpy as np
    import torch

    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), 64):
            o = model(torch.from_numpy(np.ascontiguousarray(x[i : i + 64])))
            outs.append(torch.sigmoid(o["fused"] if fused else o))
    return torch.cat(outs).numpy()


def _cross_source(folders: list[Path], proto, base, labels: list[str], cfg,
                  args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for folder in folders:
        if not folder.is_dir():
            result[folder.name] = {"skipped": f"{folder}: not found"}
            continue
        x, y = _folder_arrays(folder, labels, cfg)
        pos = {c: int(v) for c, v in zip(labels, y.sum(axis=0)) if v > 0}
        result[folder.name] = {"n_records": int(len(y)), "positives": pos, "units": "mV (not z-scored at source)",
                               "protoecgnet_fused": _score(y, _probs(proto, x, True), labels, args),
                               "baseline_resnet1d": _score(y, _probs(base, x, False), labels, args)}
    return result


def _folder_arrays(folder: Path, labels: list[str], cfg):
    from medcl.data.wfdb_folder import WFDBFolder

    d = cfg.data
    return WFDBFolder(folder, label_names=labels, fs=d.fs, n_samples=d.n_samples, highpass=d.highpass,
                      cache_dir=cfg.data.cache_dir).arrays()


def _targets(fused: dict[str, Any]) -> dict[str, Any]:
    macro = fused["macro"]["full-fold"]["value"]
    afib = fused["per_class"].get("AFIB")
    return {"targets": TARGETS,
            "targets_met": {"macro_auroc": macro is not None and macro >= TARGETS["macro_auroc"],
                            "afib_auroc": afib is not None and afib >= TARGETS["afib_auroc"]}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result (``{"skipped": ...}`` without the data)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads do not spin on a shared box
    data_root = Path(args.data) if args.data else _default_data() / "ptbxl-real-subset"
    if not (data_root / "ptbxl_database.csv").is_file():
        return {"skipped": f"{data_root}: real PTB-XL subset not found (it lives in ../shared/data, "
                           "not in a fresh clone); nothing to benchmark"}
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out) if getattr(args, "out", None) else Path(tempfile.mkdtemp(prefix="medcl-ecg-real-"))
    with tempfile.TemporaryDirectory(prefix="medcl-ecg-real-work-") as tmp:
        return _run(args, data_root, out, Path(tmp))


def _run(args: argparse.Namespace, data_root: Path, out: Path, work: Path) -> dict[str, Any]:
    from medcl.metrics.estimators import select_classes
    from medcl.nets.protoecg import BRANCHES
    from medcl.pipelines.ecg_baseline import train_baseline
    from medcl.pipelines.ecg_data import load_data, predict_split
    from medcl.pipelines.ecg_evaluate import BRANCH_SOURCES
    from medcl.pipelines.ecg_model import load_model

    t0 = time.perf_counter()
    cfg, size = _config(args, data_root, out)
    timing: dict[str, float] = {}
    run_dir = work / "run"
    for stage in ("joint", "project", "fusion"):
        ckpt = _timed_stage(cfg, run_dir, stage, timing)
    final = out / "checkpoints" / "ecg_real.ckpt"
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, final)
    net, _, labels, extra = load_model(final)
    data = load_data(cfg, workers=cfg.train.num_workers or None)
    start = time.perf_counter()
    base = train_baseline(data, cfg, work / "baseline", size["epochs"], cfg.optim.lr)
    timing["baseline"] = time.perf_counter() - start

    start = time.perf_counter()
    p_fused, p_contrib, y = predict_split(net, data, "test", "fusion", 64, with_branches=True,
                                          branch_source="contribution")
    _, p_head, _ = predict_split(net, data, "test", "fusion", 64, with_branches=True, branch_source="head")
    p_base = _probs(base, data.ptbxl.arrays("test")[0], False)
    models = {"protoecgnet_fused": _score(y, p_fused, labels, args), "baseline_resnet1d": _score(y, p_base, labels, args)}
    for b in BRANCHES:
        idx = data.groups[b]
        names = [labels[i] for i in idx]
        models[f"protoecgnet_{b}"] = {
            "from_fusion_contribution": _score(y[:, idx], p_contrib[:, idx], names, args),
            "from_joint_branch_head": _score(y[:, idx], p_head[:, idx], names, args),
        }
    timing["evaluate"] = time.perf_counter() - start
    start = time.perf_counter()
    folders = ([Path(f) for f in args.cross_source] if args.cross_source is not None
               else [data_root.parent / "challenge-mix", data_root.parent / "cinc2021-sample"])
    cross = _cross_source(folders, net, base, labels, cfg, args)
    timing["cross_source"] = time.perf_counter() - start
    timing["total"] = time.perf_counter() - t0
    fused = models["protoecgnet_fused"]["macro"]["full-fold"]["value"]
    plain = models["baseline_resnet1d"]["macro"]["full-fold"]["value"]
    n_train = len(data.ptbxl.split_indices("train"))
    return {
        "data": {"root": str(data_root), "real": True, "folds": FOLDS, "n_records": len(data.ptbxl),
                 "n_train": n_train, "n_val": len(data.ptbxl.split_indices("val")), "n_test": int(len(y)),
                 "note": "real PTB-XL ECGs (band-passed and z-scored per lead by the public source); both models "
                         "z-score every record per lead inside the model"},
        "settings": {"quick": bool(args.quick), "threads": args.threads, "min_positives": args.min_positives,
                     "bootstrap": args.bootstrap, **size, "recipe": cfg.optim.model_dump(), "dropout": cfg.model.dropout},
        "classes_scored": int(select_classes(y, args.min_positives).sum()),
        "models": models,
        "branch_scores": {"from_fusion_contribution": BRANCH_SOURCES["contribution"],
                          "from_joint_branch_head": BRANCH_SOURCES["fixed-head"]},
        "prototypes_cost_macro_auroc": None if fused is None or plain is None else plain - fused,
        **_targets(models["protoecgnet_fused"]),
        "cross_source": cross,
        "projection": _projection_check(extra, data, dict(cfg.model.per_class)),
        "early_stopping": extra.get("early_stopping", {}),
        "timing_s": timing,
        "joint_train_samples_per_s_at_most": n_train * cfg.train.max_epochs / timing["joint"],
        "peak_rss_mb": peak_rss_mb(),
        "checkpoint": str(final),
        "device": "cpu",
    }
