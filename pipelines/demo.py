"""``medcl demo``: every family end to end on built-in data, small enough for a laptop CPU.

Each family generates its synthetic data with the package's deterministic generators, trains
briefly through the shared engine, and writes the outputs a user would look at:

- SepCLR on the synthetic 3D NIfTI cohort: embeddings, probe table (``evaluation.json``), PCA
  plots and salient-attribution NIfTI overlays;
- prostate zones on synthetic phantoms: segmentation of a real T2 scan from ``../shared/data``
  (or a held-out phantom) with volumes, PI-RADS sectors, uncertainty and a QC image;
- ProtoECGNet on a synthetic PTB-XL-shaped folder: predictions and HTML prototype reports with an
  index page, for real ECG records from ``../shared/data`` when present.

The trained checkpoints are kept under ``<out>/checkpoints/{sepclr,zones,ecg}.ckpt`` so the
family commands can be run on the user's own data right away.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAMILIES = ("sepclr", "zones", "ecg")


@dataclass(frozen=True)
class DemoSizes:
    """Data and training sizes of one demo flavour."""

    cohort_subjects: int
    sepclr_epochs: int
    phantoms: int
    zones_epochs: int
    zones_stage2_epochs: int
    ecg_records: int
    ecg_epochs: int


QUICK = DemoSizes(
    cohort_subjects=40, sepclr_epochs=8, phantoms=5, zones_epochs=4, zones_stage2_epochs=1, ecg_records=200, ecg_epochs=3
)
FULL = DemoSizes(
    cohort_subjects=160, sepclr_epochs=40, phantoms=12, zones_epochs=20, zones_stage2_epochs=4, ecg_records=600, ecg_epochs=8
)


@dataclass
class FamilyResult:
    """What one family produced: files to look at and a few key numbers."""

    outputs: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, float | str] = field(default_factory=dict)
    checkpoint: Path | None = None


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the working directory or the source checkout, when present."""
    env = os.environ.get("MEDCL_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


def say(message: str) -> None:
    print(f"[medcl demo] {message}", flush=True)


# ------------------------------------------------------------------------------------------ SepCLR
def run_sepclr(out: Path, sizes: DemoSizes) -> FamilyResult:
    from medcl.config import load_config
    from medcl.data.synthetic.cohort import write_dataset
    from medcl.pipelines.sepclr import SepCLRConfig, embed, evaluate, explain, train

    say(f"SepCLR: writing a synthetic 3D cohort of {sizes.cohort_subjects} NIfTI volumes")
    manifest = write_dataset(out / "data" / "cohort", sizes.cohort_subjects, seed=0)
    cfg = load_config(
        SepCLRConfig,
        None,
        [
            f"data.manifest={manifest}",
            "data.spatial_size=[32, 32, 32]",
            "data.intensity=none",
            "data.batch_size=16",
            "model.depth=10",
            "model.width=8",
            "model.cifar_stem=false",
            "optim.lr=2e-3",
            f"train.max_epochs={sizes.sepclr_epochs}",
            "train.log_every_n_steps=5",
        ],
    )
    say("SepCLR: training common + salient encoders")
    ckpt = train(cfg, out / "runs" / "sepclr")
    say("SepCLR: embeddings, probes, plots, salient attributions")
    embeddings = embed(ckpt, manifest, out / "sepclr")
    evaluation = evaluate(embeddings, out / "sepclr")
    overlays = explain(ckpt, manifest, out / "sepclr" / "saliency")
    result = FamilyResult(checkpoint=ckpt)
    result.outputs = {
        "embeddings": str(embeddings),
        "evaluation": str(out / "sepclr" / "evaluation.json"),
        "plots": str(out / "sepclr"),
        "saliency overlays": f"{len(overlays)} NIfTI in {out / 'sepclr' / 'saliency'}",
    }
    result.numbers = {
        "bg/tg balanced acc on S": evaluation["bg_tg"]["salient"],
        "bg/tg balanced acc on C": evaluation["bg_tg"]["common"],
    }
    return result


# ------------------------------------------------------------------------------------------- zones
def _real_t2_scans(shared: Path | None) -> list[Path]:
    if shared is None:
        return []
    dicom = shared / "mri" / "prostatex-dicom" / "ProstateX-0000" / "07-07-2011"
    series = sorted(p for p in dicom.glob("*") if p.is_dir() and "t2" in p.name.lower() and "tra" in p.name.lower())
    nrrd = shared / "mri" / "prostatex-nrrd" / "ProstateX-0217" / "t2_tse_tra.nrrd"
    return series[:1] + ([nrrd] if nrrd.is_file() else [])


def run_zones(out: Path, sizes: DemoSizes) -> FamilyResult:
    from medcl.config import load_config
    from medcl.data.synthetic.prostate import write_dataset
    from medcl.pipelines.zones import ZonesConfig, train
    from medcl.pipelines.zones_segment import segment

    say(f"zones: writing {sizes.phantoms} synthetic prostate phantoms")
    datalist = write_dataset(out / "data" / "phantoms", sizes.phantoms, seed=0)
    cfg = load_config(
        ZonesConfig,
        None,
        [
            f"data.datalist={datalist}",
            "data.pixdim=[1.0, 1.0, 3.0]",
            "data.patch_size=[32, 32, 8]",
            "data.samples_per_volume=4",
            "model.filters=[8, 16, 32]",
            "model.kernel_sizes=[[3, 3, 1], [3, 3, 1], [3, 3, 3]]",
            "model.strides=[[1, 1, 1], [2, 2, 1], [2, 2, 2]]",
            "optim.lr=0.003",
            f"train.max_epochs={sizes.zones_epochs}",
            f"train.check_val_every_n_epoch={max(1, sizes.zones_epochs // 2)}",
            f"stage2.epochs={sizes.zones_stage2_epochs}",
            "train.log_every_n_steps=5",
        ],
    )
    say("zones: training the dual-path network (stage 1, then co-training stage 2)")
    ckpt = train(cfg, out / "runs" / "zones")
    scans = _real_t2_scans(shared_data_dir())
    if not scans:
        items = json.loads(Path(datalist).read_text())
        first = (items.get("validation") or items["training"])[0]["image"]
        scans = [Path(datalist).parent / first]
    say(f"zones: segmenting {len(scans)} scan(s): {', '.join(p.name for p in scans)}")
    rows = segment([str(p) for p in scans], ckpt, out / "zones", tta=True)
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        raise RuntimeError(f"segmentation failed: {failed[0].get('error')}")
    result = FamilyResult(checkpoint=ckpt)
    result.outputs = {"segmentations": str(out / "zones"), "summary": str(out / "zones" / "summary.csv")}
    first = rows[0]
    for key in ("whole_gland_ml", "gland_ml", "PZ_ml", "TZ_ml"):
        if key in first:
            result.numbers[f"{first.get('case', 'case')} {key}"] = first[key]
    return result


# --------------------------------------------------------------------------------------------- ECG
def _real_ecg_records(shared: Path | None) -> list[Path]:
    if shared is None:
        return []
    folder = shared / "ecg" / "cinc2021-sample"
    return sorted(folder.glob("HR0600[0-2].hea")) + sorted(folder.glob("E0750[0-1].hea"))


def run_ecg(out: Path, sizes: DemoSizes) -> FamilyResult:
    from medcl.config import load_config
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.pipelines.ecg import ECGConfig, evaluate, predict, train
    from medcl.pipelines.ecg_report import write_reports

    say(f"ECG: writing a synthetic PTB-XL-shaped folder of {sizes.ecg_records} records")
    database = write_dataset(out / "data" / "ptbxl-synthetic", sizes.ecg_records, seed=0)
    root = Path(database).parent
    cfg = load_config(
        ECGConfig,
        None,
        [
            f"data.root={root}",
            f"data.cache_dir={out / 'data' / 'ecg-cache'}",
            "model.width=8",
            "model.layers=[1, 1, 1, 1]",
            "model.proto_dim=32",
            "model.per_class={rhythm: 2, morphology: 2, global: 2}",
            "optim.lr=0.003",
            "optim.head_lr=0.01",
            f"optim.head_epochs={sizes.ecg_epochs}",
            f"train.max_epochs={sizes.ecg_epochs}",
            "train.log_every_n_steps=5",
        ],
    )
    say("ECG: training ProtoECGNet (joint -> project -> fusion)")
    ckpt = train(cfg, out / "runs" / "ecg", stages=("joint", "project", "fusion"))
    say("ECG: evaluating on the synthetic test fold")
    metrics = evaluate(ckpt, root, out / "ecg" / "evaluation")
    records = _real_ecg_records(shared_data_dir())
    test_records = sorted((root / "records100").rglob("*.hea"))[-3:]
    records = [*records, *test_records]
    say(f"ECG: predictions and prototype reports for {len(records)} records")
    predict([str(r) for r in records], ckpt, out / "ecg" / "predictions")
    index = write_reports([str(r) for r in records], ckpt, out / "ecg" / "reports", source_roots=[root])
    result = FamilyResult(checkpoint=ckpt)
    result.outputs = {
        "evaluation": str(out / "ecg" / "evaluation"),
        "predictions": str(out / "ecg" / "predictions" / "predictions.csv"),
        "reports": str(index),
    }
    macro = metrics["fused"]["macro"]
    low, high = macro["ci"]
    result.numbers["fused macro AUROC, synthetic test fold"] = f"{macro['value']:.3f} (95% CI {low:.3f}-{high:.3f})"
    return result


RUNNERS: dict[str, Callable[[Path, DemoSizes], FamilyResult]] = {
    "sepclr": run_sepclr,
    "zones": run_zones,
    "ecg": run_ecg,
}


def _keep_checkpoint(out: Path, family: str, ckpt: Path | None) -> str | None:
    if ckpt is None:
        return None
    target = out / "checkpoints" / f"{family}.ckpt"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt, target)
    return str(target)


def _print_summary(results: dict[str, FamilyResult | str], out: Path, seconds: float) -> None:
    print("\n" + "=" * 78)
    print(f"medcl demo finished in {seconds:.0f} s; everything is under {out}")
    for family, result in results.items():
        if isinstance(result, str):
            print(f"\n{family}: FAILED: {result}")
            continue
        print(f"\n{family}:")
        for name, where in result.outputs.items():
            print(f"  {name:<28} {where}")
        for name, value in result.numbers.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"  {name:<44} {shown}")
    examples = {
        "sepclr": f"medcl sepclr embed --checkpoint {out}/checkpoints/sepclr.ckpt --manifest YOUR_MANIFEST.csv --out emb",
        "zones": f"medcl zones segment YOUR_T2.nii.gz --checkpoint {out}/checkpoints/zones.ckpt --out seg_out",
        "ecg": f"medcl ecg report YOUR_RECORD.hea --checkpoint {out}/checkpoints/ecg.ckpt --out reports",
    }
    ran = [f for f, r in results.items() if not isinstance(r, str)]
    if ran:
        print("\nRun the family commands on your own data with the demo checkpoints, e.g.")
        for family in ran:
            print(f"  {examples[family]}")
    print("=" * 78)


def run_demo(out_dir: str | os.PathLike = "demo_out", quick: bool = False, families: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code (0 when every family succeeded)."""
    import torch

    from medcl.utils import write_json

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if quick else FULL
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    t0 = time.perf_counter()
    results: dict[str, FamilyResult | str] = {}
    summary: dict[str, Any] = {"quick": quick, "families": {}}
    for family in families or FAMILIES:
        start = time.perf_counter()
        try:
            result = RUNNERS[family](out, sizes)
        except Exception as exc:  # report, keep going with the other families
            traceback.print_exc(file=sys.stderr)
            results[family] = f"{type(exc).__name__}: {exc}"
            summary["families"][family] = {"status": "error", "error": results[family]}
            continue
        kept = _keep_checkpoint(out, family, result.checkpoint)
        results[family] = result
        summary["families"][family] = {
            "status": "ok",
            "seconds": round(time.perf_counter() - start, 1),
            "checkpoint": kept,
            "outputs": result.outputs,
            "numbers": result.numbers,
        }
        say(f"{family} done in {time.perf_counter() - start:.0f} s")
    write_json(out / "demo_summary.json", summary)
    _print_summary(results, out, time.perf_counter() - t0)
    return 0 if all(not isinstance(r, str) for r in results.values()) else 1
