"""Zones benchmark: one real 384 x 384 x 19 T2 scan per process, medcl against the MONAI bundle, side by side.

Each setting is one fresh process segmenting one scan, as a user's CLI call does: medcl with the
automatic ROI and flip TTA (the default), without TTA, in bfloat16, with the fixed centred ROI
(the step before localisation), and the MONAI bundle that ``medcl export --format bundle`` writes
from the same checkpoint, run by ``python -m monai.bundle run`` (same recipe: centred ROI, flip
TTA; NIfTI input, so the scan is converted once beforehand). Rounds are interleaved (every setting
once per round, the order rotated) so a busy machine slows all sides alike; each figure is the
median with its min-max spread over the rounds. Per process: wall seconds, peak resident memory
(``wait4`` of the child), and for medcl the split into imports, model load and the segment call
(with its CPU seconds, which a shared machine inflates less). The 1-minute load average before
each round is recorded.

The scan is the ProstateX-0000 DICOM T2 transverse series from ``../shared/data`` when present,
else a synthetic volume of the same size and spacing. The network is the default configuration's
dual-path network with random weights unless ``--checkpoint`` is given. Random weights cost the
same per voxel, but their coarse pass finds "gland" almost everywhere, so the automatic box grows
to its cap (1.5 x ``roi_mm``): the worst case; a trained model's box is usually the 80 mm minimum
(pass ``--checkpoint`` of ``medcl bench zones-real`` for that). Training throughput comes from
:mod:`medcl.pipelines.bench.zones_train`. The module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 10.0
TARGET_RSS_MB = 1536.0
REAL_SCAN = Path("mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench zones``."""
    parser.add_argument("--scan", default=None, help="scan to segment (default: the ProstateX-0000 T2 tra series)")
    parser.add_argument("--checkpoint", default=None, help="zones checkpoint (default: random dual-path weights)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every setting (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="one round of medcl (auto ROI, TTA) and the bundle only; no ONNX or training benchmark")
    parser.add_argument("--settings", default=None,
                        help="comma-separated subset of the settings (default: all; --quick: medcl_auto_tta,bundle_centred_tta)")
    parser.add_argument("--skip-bundle", action="store_true", help="skip the MONAI bundle side of the comparison")
    parser.add_argument("--skip-train", action="store_true", help="skip the training-throughput benchmark")
    parser.add_argument("--skip-onnx", action="store_true", help="skip the onnxruntime vs eager comparison")


def _default_scan() -> Path | None:
    root = Path(os.environ.get("MEDCL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
    return root / REAL_SCAN if (root / REAL_SCAN).is_dir() else None


def _synthetic_scan(path: Path) -> Path:
    """A 384 x 384 x 19 noisy ellipsoid at 0.5 x 0.5 x 3.0 mm (LPS-like flips), as NIfTI."""
    import nibabel as nib
    import numpy as np

    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in (384, 384, 19)), indexing="ij")
    image = 300 + 500 * ((x / 0.2) ** 2 + (y / 0.15) ** 2 + (z / 0.8) ** 2 < 1) + rng.normal(0, 40, x.shape)
    nib.save(nib.Nifti1Image(image.astype(np.float32), np.diag([-0.5, -0.5, 3.0, 1.0])), str(path))
    return path


def _random_checkpoint(path: Path) -> Path:
    """Default dual-path network, random weights, in the medcl checkpoint format."""
    import torch

    from medcl.data.zones_labels import LABEL_MAP
    from medcl.nets.dualpath import build_zones_net
    from medcl.pipelines.zones import ZonesConfig

    cfg = ZonesConfig().model_dump(mode="json")
    torch.manual_seed(0)
    net = build_zones_net(cfg["model"])
    payload = {"family": "zones", "config": cfg, "label_map": LABEL_MAP, "state_dict": net.state_dict(),
               "versions": {}, "extra": {}}
    torch.save({"medcl": payload}, path)
    return path


SETTINGS: dict[str, dict[str, Any]] = {
    "medcl_auto_tta": {"tta": True, "roi": "auto", "precision": "fp32"},
    "medcl_auto_no_tta": {"tta": False, "roi": "auto", "precision": "fp32"},
    "medcl_auto_tta_bf16": {"tta": True, "roi": "auto", "precision": "bf16"},
    "medcl_centred_tta": {"tta": True, "roi": "center", "precision": "fp32"},
    "bundle_centred_tta": {"bundle": True},
}
QUICK_SETTINGS = ("medcl_auto_tta", "bundle_centred_tta")


def _run_process(cmd: list[str], threads: int) -> tuple[int, str, float, float]:
    """Run ``cmd`` limited to ``threads`` threads; return (exit code, stdout + stderr tail, wall s, peak RSS MiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        log.seek(0)
        out = log.read()
    scale = 1 / (1024 * 1024) if sys.platform == "darwin" else 1 / 1024
    return proc.returncode, out, wall, usage.ru_maxrss * scale


def _run_setting(name: str, scan: Path, nifti: Path, ckpt: Path, bundle: Path | None, out: Path,
                 threads: int) -> dict[str, Any]:
    """One process of one setting; its timings and peak memory."""
    setting = SETTINGS[name]
    if setting.get("bundle"):
        if bundle is None:
            return {"skipped": True}
        data = out / "in"
        data.mkdir(parents=True, exist_ok=True)
        if not (data / "scan.nii.gz").exists():
            (data / "scan.nii.gz").symlink_to(nifti)
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
               "--bundle_root", str(bundle), "--dataset_dir", str(data), "--output_dir", str(out / "bundle_out")]
    else:
        cmd = [sys.executable, "-m", "medcl.pipelines.bench.zones", "--child", str(scan), str(ckpt), str(out / name),
               str(int(setting["tta"])), str(threads), setting["roi"], setting["precision"]]
    code, log, wall, rss = _run_process(cmd, threads)
    if code != 0:
        return {"error": log.strip().splitlines()[-1] if log.strip() else f"exit {code}"}
    row = json.loads(log.strip().splitlines()[-1]) if not setting.get("bundle") else {}
    return {**row, "process_s": round(wall, 2), "peak_rss_mb": round(rss, 1)}


def _child(scan: str, ckpt: str, out: str, tta: str, threads: str, roi: str, precision: str) -> None:
    """Subprocess body: imports, model load and one segment call timed apart; printed as JSON."""
    start = time.perf_counter()
    import torch

    torch.set_num_threads(int(threads))
    from medcl.inferers.zones_segmenter import ZonesSegmenter
    from medcl.pipelines.zones_segment import segment

    imported = time.perf_counter()
    segmenter = ZonesSegmenter.from_checkpoint(ckpt, device="cpu", tta=bool(int(tta)), roi=roi, precision=precision)
    loaded = time.perf_counter()
    before = time.process_time()
    row = segment([scan], segmenter, Path(out))[0]
    cpu = time.process_time() - before
    if row["status"] != "ok":
        raise SystemExit(row["error"])
    volumes = json.loads((Path(out) / f"{row['case']}_volumes.json").read_text())
    box = volumes["roi"]
    print(json.dumps({
        "import_s": round(imported - start, 2), "load_model_s": round(loaded - imported, 2),
        "segment_s": row["seconds"], "segment_cpu_s": round(cpu, 2), "roi": box["mode"],
        "roi_voxels": [e - s for s, e in zip(box["start_ras"], box["end_ras"])], "gland_ml": row["gland_ml"],
    }))


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min-max of each numeric field over the rounds of one setting."""
    ok = [r for r in runs if "error" not in r and not r.get("skipped")]
    if not ok:
        return runs[0] if runs else {"skipped": True}
    keys = [k for k, v in ok[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    summary: dict[str, Any] = {k: _spread([r[k] for r in ok]) for k in keys}
    summary.update({k: v for k, v in ok[0].items() if k not in keys}, n_runs=len(ok))
    if len(ok) < len(runs):
        summary["errors"] = [r["error"] for r in runs if "error" in r]
    return summary


def _to_nifti(scan: Path, path: Path) -> Path:
    """The scan as NIfTI for the bundle (``LoadImaged`` with the NIfTI reader), written with medcl's writer."""
    if scan.name.endswith((".nii", ".nii.gz")):
        return scan
    from medcl.io.image import read_image, write_like

    image = read_image(scan)
    write_like(image.as_tensor()[0].numpy(), image, path)
    return path


def _export_bundle(ckpt: Path, out: Path) -> Path:
    from medcl.pipelines.export import export

    export(ckpt, "bundle", out)
    return out


def _load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def side_by_side(args: argparse.Namespace, scan: Path, ckpt: Path, work: Path) -> dict[str, Any]:
    """Interleaved rounds of every setting; per setting the median and spread, plus the load average per round."""
    names = list(QUICK_SETTINGS if args.quick else SETTINGS)
    if getattr(args, "settings", None):
        names = [n.strip() for n in args.settings.split(",")]
        unknown = [n for n in names if n not in SETTINGS]
        if unknown:
            from medcl.errors import MedclError

            raise MedclError(f"--settings: {unknown[0]!r} is not one of {', '.join(SETTINGS)}")
    if args.skip_bundle and "bundle_centred_tta" in names:
        names.remove("bundle_centred_tta")
    bundle = _export_bundle(ckpt, work / "bundle") if "bundle_centred_tta" in names else None
    nifti = _to_nifti(scan, work / "scan.nii.gz")
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    loads = []
    for round_ in range(1 if args.quick else args.repeats):
        loads.append(_load_average())
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            runs[name].append(_run_setting(name, scan, nifti, ckpt, bundle, work / f"r{round_}", args.threads))
    results = {name: _summarise(r) for name, r in runs.items()}
    return {"settings": results, "load_average_1min": loads, "bundle_over_medcl": _ratios(results)}


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Bundle seconds over medcl seconds per process (median of each side; > 1: medcl is faster)."""
    bundle = results.get("bundle_centred_tta", {}).get("process_s")
    if not isinstance(bundle, dict):
        return {}
    return {name: round(bundle["median"] / r["process_s"]["median"], 2) for name, r in results.items()
            if name.startswith("medcl") and isinstance(r.get("process_s"), dict)}


def _training(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick or args.skip_train:
        return {"skipped": True}
    import torch

    from medcl.pipelines.bench.zones_train import bench_training_throughput

    torch.set_num_threads(args.threads)
    return bench_training_throughput(device="cpu")


def _onnx_vs_eager(args: argparse.Namespace, ckpt: Path) -> dict[str, Any]:
    """The network's patch model on the flip-TTA batch of one ProstateX window (2 x 1 x 160 x 160 x 20)."""
    if args.skip_onnx:
        return {"skipped": True}
    import torch

    from medcl.export.onnx import ZonesPatchModel
    from medcl.inferers.zones_segmenter import ZonesSegmenter
    from medcl.pipelines.bench.engines import onnx_vs_eager

    torch.set_num_threads(args.threads)
    net = ZonesSegmenter.from_checkpoint(ckpt, device="cpu").net
    x = torch.rand(2, 1, 160, 160, 20)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    return onnx_vs_eager(ZonesPatchModel(net), x, "zones", "image", ["probabilities"], {"image": axes},
                         args.threads, 1 if args.quick else 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the numbers (``medcl bench zones`` prints them as JSON)."""
    with tempfile.TemporaryDirectory(prefix="medcl-bench-zones-") as tmp:
        work = Path(tmp)
        scan = Path(args.scan) if args.scan else _default_scan()
        source = str(scan) if scan else "synthetic 384x384x19 @ 0.5x0.5x3.0 mm"
        scan = scan or _synthetic_scan(work / "synthetic_t2.nii.gz")
        ckpt = Path(args.checkpoint) if args.checkpoint else _random_checkpoint(work / "random.ckpt")
        compared = side_by_side(args, scan, ckpt, work)
        engines = {"skipped": True} if args.quick else _onnx_vs_eager(args, ckpt)
    timed = compared["settings"].get("medcl_auto_tta", {})
    ok = "segment_s" in timed
    return {
        "device": "cpu",
        "threads": args.threads,
        "scan": source,
        "checkpoint": args.checkpoint or "random weights, default configuration's dual-path network",
        "roi": "medcl_auto_*: automatic ROI (coarse pass at 1.5 x 1.5 x 3 mm, then a box of at least "
        "80 x 80 x 120 mm around the gland; random weights push it to its 120 mm cap); *_centred_*: the fixed "
        "centred 80 mm box (medcl before localisation, and the bundle)",
        **compared,
        "target": {"segment_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "meets_target": ok and timed["segment_s"]["median"] <= TARGET_SECONDS
        and timed["peak_rss_mb"]["median"] <= TARGET_RSS_MB,
        "onnxruntime_vs_eager": engines,
        "training": _training(args),
    }


if __name__ == "__main__" and len(sys.argv) == 9 and sys.argv[1] == "--child":
    _child(*sys.argv[2:])
