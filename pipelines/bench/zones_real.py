"""Real few-shot zones benchmark: leave-one-case-out over the real Prostate158 sample.

For each of the real T2 volumes with manual PZ/TZ labels in ``../shared/data/mri/prostate158-sample``
(cases 001, 002, 020), each variant is trained on the other cases with the few-shot recipe
``configs/zones/fewshot.yaml`` (the real training chain of ``medcl zones train``: a small
dual-path net at 1 x 1 x 3 mm, gland-centred patches, flips/rotation/scaling/intensity
augmentation, Dice + CE with the marginal loss for the unannotated DPU/AFS, one-cycle learning
rate, a fixed number of optimiser steps) and the held-out case is segmented with ``medcl zones
segment`` (automatic ROI from a coarse pass at 1 x 1 x 3 mm, flip TTA, post-processing); PZ, TZ
and whole-gland Dice, MASD and HD95 (mm) are computed against reader 1
(:mod:`medcl.metrics.segmentation`). A predicted DPU counts as TZ and a predicted AFS as
background, as these references draw them. The inter-reader agreement (reader 1 vs reader 2 on
001 and 002) is the human ceiling. Variants: ``dualpath`` and ``baseline`` (single path) on the
real cases (``--quick``: the recipe's steps); the full run trains 2x the steps and adds
``phantoms`` (synthetic only) and ``real+phantoms``. The dual-path model trained on all real cases
is kept as ``DIR/checkpoints/zones_real.ckpt``.

Leave-one-out over three cases is a small-sample estimate: each fold trains on two scans.
The module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

SAMPLE = Path("mri/prostate158-sample")
EVAL_NAMES = {1: "PZ", 2: "TZ"}
TO_REFERENCE_ZONES = (0, 1, 2, 2, 0)  # medcl BG, PZ, TZ, DPU -> TZ, AFS -> BG
PROSTATE158_TO_MEDCL = (0, 2, 1)  # Prostate158 1 TZ, 2 PZ
VARIANTS_QUICK = ("dualpath", "baseline")
VARIANTS_FULL = ("dualpath", "baseline", "phantoms", "real+phantoms")
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "zones" / "fewshot.yaml"
FULL_STEP_FACTOR = 2  # full run: this many times the recipe's steps (13 models x 400 steps, about 60 min on 2 cores)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench zones-real``."""
    parser.add_argument("--data", default=None, help=f"Prostate158 sample folder (default ../shared/data/{SAMPLE})")
    parser.add_argument("--quick", action="store_true", help="dual-path and single-path only, short training")
    parser.add_argument("--variants", default=None, help="comma-separated subset of " + ",".join(VARIANTS_FULL))
    parser.add_argument("--config", default=None, help=f"training recipe (default {RECIPE.relative_to(RECIPE.parents[2])})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimiser steps per model (default: the recipe's, x{FULL_STEP_FACTOR} without --quick)")
    parser.add_argument("--folds", type=int, default=None, help="only the first N held-out cases (tests)")
    parser.add_argument("--no-final", action="store_true", help="skip the model trained on all real cases")


def training_config(arch: str, steps: int | None = None, recipe: str | Path | None = None) -> dict[str, Any]:
    """The few-shot recipe (``configs/zones/fewshot.yaml``) for ``arch``, with ``steps`` optimiser steps.

    The single-path baseline has no auxiliary head and no co-training stage.
    """
    import yaml

    path = Path(recipe) if recipe else RECIPE
    if not path.is_file():
        from medcl.errors import MedclError

        raise MedclError(f"--config: {path} not found (the few-shot zones recipe)")
    cfg = yaml.safe_load(path.read_text()) or {}
    cfg["model"] = {**cfg.get("model", {}), "arch": arch}
    if arch == "baseline":
        cfg["model"]["aux"] = "none"
        cfg["stage2"] = {**cfg.get("stage2", {}), "epochs": 0}
    if steps is not None:
        cfg["train"] = {**cfg.get("train", {}), "max_steps": steps}
    return cfg


def _items(root: Path, work: Path) -> list[dict]:
    from medcl.data.datalist import read_datalist
    from medcl.data.layouts import build_datalist

    path, _ = build_datalist(root, "prostate158", work / "all.json", folds=1)
    return read_datalist(path, "training", ("image", "label"))


def _phantom_items(work: Path, n: int = 6) -> list[dict]:
    from medcl.data.datalist import read_datalist
    from medcl.data.synthetic.prostate import write_dataset

    path = work / "phantoms" / "dataset.json"
    if not path.is_file():
        path = write_dataset(work / "phantoms", n=n, seed=0, n_validation=0)
    return read_datalist(path, "training", ("image", "label"))


def _train(items: list[dict], recipe: dict[str, Any], out: Path, name: str, synthetic: bool) -> tuple[Path, float]:
    """Train on ``items`` (no validation: the last checkpoint is kept); return it and the seconds taken."""
    from medcl.data.datalist import write_datalist
    from medcl.pipelines.zones import ZonesConfig, train

    out.mkdir(parents=True, exist_ok=True)
    datalist = write_datalist(out / "datalist.json", {"training": items, "validation": []}, name=name,
                              synthetic=synthetic)
    cfg = ZonesConfig.model_validate({**recipe, "data": {**recipe.get("data", {}), "datalist": str(datalist)}})
    start = time.perf_counter()
    checkpoint = train(cfg, out)
    return checkpoint, time.perf_counter() - start


def _reference(path: str | Path) -> Any:
    import nibabel as nib
    import numpy as np

    return np.asarray(PROSTATE158_TO_MEDCL)[np.asarray(nib.load(path).dataobj).astype(int)]


def case_scores(pred: Any, ref: Any, spacing: Any) -> dict[str, dict[str, float | None]]:
    """PZ, TZ and gland Dice / MASD / HD95 (mm) of medcl zone maps against a PZ/TZ reference."""
    import numpy as np

    from medcl.metrics.segmentation import zone_metrics

    pred = np.asarray(TO_REFERENCE_ZONES)[np.asarray(pred).astype(int)]
    rows = zone_metrics(pred, ref, spacing, EVAL_NAMES)
    rows += zone_metrics((pred > 0).astype(np.uint8), (np.asarray(ref) > 0).astype(np.uint8), spacing, {1: "gland"})
    return {r["zone"]: {k: _num(r[k]) for k in ("dice", "masd_mm", "hd95_mm")} for r in rows}


def _num(value: Any) -> float | None:
    import math

    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def _segment_and_score(checkpoint: Path, item: dict, out: Path) -> dict[str, Any]:
    import nibabel as nib

    from medcl.pipelines.zones_segment import segment, voxel_spacing

    case = Path(item["image"]).parent.name
    rows = segment([item["image"]], checkpoint, out, device="cpu")
    if rows[0]["status"] != "ok":
        return {"test_case": case, "error": rows[0]["error"]}
    zones = nib.load(out / "t2_zones.nii.gz")
    scores = case_scores(zones.get_fdata().astype(int), _reference(item["label"]), voxel_spacing(zones.affine))
    return {"test_case": case, **scores, "roi": rows[0]["roi"], "flags": rows[0]["flags"],
            "segment_seconds": rows[0]["seconds"], "qc_png": str(out / "t2_qc.png")}


def _mean(folds: list[dict]) -> dict[str, dict[str, float | None]]:
    mean: dict[str, dict[str, float | None]] = {}
    for zone in ("PZ", "TZ", "gland"):
        mean[zone] = {}
        for key in ("dice", "masd_mm", "hd95_mm"):
            values = [f[zone][key] for f in folds if zone in f and f[zone][key] is not None]
            mean[zone][key] = round(statistics.fmean(values), 4) if values else None
    return mean


def inter_reader(root: Path) -> dict[str, Any]:
    """Reader 1 vs reader 2 (PZ, TZ, gland) on the cases that have both: the human ceiling."""
    import nibabel as nib

    from medcl.pipelines.zones_segment import voxel_spacing

    cases = {}
    for folder in sorted(p for p in root.iterdir() if (p / "t2_anatomy_reader2.nii.gz").is_file()):
        r1 = nib.load(folder / "t2_anatomy_reader1.nii.gz")
        cases[folder.name] = case_scores(_reference(folder / "t2_anatomy_reader2.nii.gz"),
                                         _reference(folder / "t2_anatomy_reader1.nii.gz"), voxel_spacing(r1.affine))
    return {"cases": cases, "mean": _mean(list(cases.values()))}


def _variant_items(variant: str, real: list[dict], work: Path) -> tuple[str, list[dict], bool]:
    arch = "baseline" if variant == "baseline" else "dualpath"
    phantoms = _phantom_items(work) if "phantoms" in variant else []
    train = phantoms if variant == "phantoms" else real + phantoms
    return arch, train, variant == "phantoms"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Leave-one-case-out on the real cases per variant, the inter-reader ceiling, and the final model."""
    import torch

    root = Path(args.data) if args.data else Path("..") / "shared" / "data" / SAMPLE
    if not (root.is_dir() and any(root.glob("*/t2_anatomy_reader1.nii.gz"))):
        print(f"medcl: bench zones-real skipped: {root} has no Prostate158 cases", file=sys.stderr)
        return {"skipped": f"{root}: no Prostate158 cases (t2.nii.gz + t2_anatomy_reader1.nii.gz)"}
    out = Path(args.out or "bench-zones-real")
    work = out / "work"
    variants = args.variants.split(",") if args.variants else list(VARIANTS_QUICK if args.quick else VARIANTS_FULL)
    unknown = [v for v in variants if v not in VARIANTS_FULL]
    if unknown:
        from medcl.errors import MedclError

        raise MedclError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS_FULL)}")
    steps = args.steps
    recipes = {a: training_config(a, steps, args.config) for a in ("dualpath", "baseline")}
    if steps is None and not args.quick:
        recipes = {a: training_config(a, FULL_STEP_FACTOR * r["train"]["max_steps"], args.config)
                   for a, r in recipes.items()}
    start = time.perf_counter()
    real = _items(root, work)
    held_out = real[: args.folds] if args.folds else real
    result: dict[str, Any] = {
        "data": str(root), "cases": [Path(i["image"]).parent.name for i in real], "quick": bool(args.quick),
        "steps": {a: r["train"]["max_steps"] for a, r in recipes.items()}, "recipe": str(args.config or RECIPE.relative_to(RECIPE.parents[2])),
        "threads": torch.get_num_threads(), "device": "cpu",
        "protocol": "leave-one-case-out; train on the other real cases (+ phantoms where named), test on the "
        "held-out case against reader 1; automatic ROI; DPU counted as TZ, AFS as background",
        "training_config": {v: recipes["baseline" if v == "baseline" else "dualpath"] for v in variants},
        "inter_reader": inter_reader(root), "variants": {},
    }
    for variant in variants:
        folds = []
        for item in held_out:
            case = Path(item["image"]).parent.name
            arch, train_items, synthetic = _variant_items(variant, [i for i in real if i is not item], work)
            run_dir = work / variant.replace("+", "_") / (case if variant != "phantoms" else "all")
            ckpt = run_dir / "final.ckpt"
            seconds = 0.0
            if not ckpt.is_file():
                trained, seconds = _train(train_items, recipes[arch], run_dir, f"zones-real {variant}", synthetic)
                shutil.copyfile(trained, ckpt)
            fold = _segment_and_score(ckpt, item, run_dir / f"seg_{case}")
            fold.update(train_cases=sorted({Path(i["image"]).parent.name for i in train_items if i in real}),
                        n_phantoms=sum(i not in real for i in train_items), train_seconds=round(seconds, 1))
            qc = out / "qc" / f"{variant.replace('+', '_')}_{case}_qc.png"
            if fold.get("qc_png"):
                qc.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(fold.pop("qc_png"), qc)
                fold["qc"] = str(qc)
            folds.append(fold)
            print(f"[medcl] zones-real {variant} held-out {case}: " + ", ".join(
                f"{z} Dice {fold[z]['dice']}" for z in ("PZ", "TZ", "gland") if z in fold), file=sys.stderr, flush=True)
        result["variants"][variant] = {"folds": folds, "mean": _mean(folds)}
    if not args.no_final:
        trained, seconds = _train(real, recipes["dualpath"], work / "final", "zones-real all cases", False)
        final = out / "checkpoints" / "zones_real.ckpt"
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trained, final)
        result["checkpoint"] = {"path": str(final), "trained_on": result["cases"], "train_seconds": round(seconds, 1)}
    result["seconds_total"] = round(time.perf_counter() - start, 1)
    return result
