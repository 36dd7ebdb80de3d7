"""Zones benchmark: end-to-end ``segment`` time per real 384 x 384 x 19 T2 scan and peak RSS.

Each setting (flip TTA on / off with the automatic ROI; TTA with the fixed centred ROI as the
before-localisation reference) runs in a fresh subprocess limited to ``--threads`` CPU threads,
so that its peak resident memory (``ru_maxrss`` of that process) and import costs are its own.
Besides wall seconds per scan it reports CPU seconds (all threads), which a busy shared machine
inflates less.
The scan is the ProstateX-0000 DICOM T2 transverse series from ``../shared/data`` when present,
else a synthetic volume of the same size and spacing. The network is the default dual-path
architecture (both paths) with random weights unless ``--checkpoint`` is given: speed and memory
do not depend on the weights. Training throughput comes from
``medcl.pipelines.zones_bench_train.bench_training_throughput`` when that module exists.
The module top level imports nothing heavy.
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

from medcl.engine.profiling import peak_rss_mb

TARGET_SECONDS = 10.0
TARGET_RSS_MB = 1536.0
REAL_SCAN = Path("mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench zones``."""
    parser.add_argument("--scan", default=None, help="scan to segment (default: the ProstateX-0000 T2 tra series)")
    parser.add_argument("--checkpoint", default=None, help="zones checkpoint (default: random dual-path weights)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed segment calls per setting (default 3)")
    parser.add_argument("--quick", action="store_true", help="one timed call per setting, no training benchmark")
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


def _run_child(
    scan: Path, ckpt: Path, out: Path, tta: bool, threads: int, repeats: int, roi: str = "auto"
) -> dict[str, Any]:
    """Time one setting in a fresh interpreter limited to ``threads`` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "medcl.pipelines.bench.zones", "--child", str(scan), str(ckpt), str(out),
           str(int(tta)), str(threads), str(repeats), roi]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(scan: str, ckpt: str, out: str, tta: str, threads: str, repeats: str, roi: str) -> None:
    """Subprocess body: load the model, segment ``repeats`` times, print timings and peak RSS as JSON."""
    start = time.perf_counter()
    import torch

    torch.set_num_threads(int(threads))
    from medcl.pipelines.zones_segment import ZonesSegmenter, segment

    imported = time.perf_counter()
    segmenter = ZonesSegmenter.from_checkpoint(ckpt, device="cpu", tta=bool(int(tta)), roi=roi)
    loaded = time.perf_counter()
    rows, cpu = [], []
    for _ in range(int(repeats)):
        before = time.process_time()
        rows.append(segment([scan], segmenter, Path(out))[0])
        cpu.append(time.process_time() - before)
    if rows[0]["status"] != "ok":
        raise SystemExit(rows[0]["error"])
    seconds = [r["seconds"] for r in rows]
    print(json.dumps({
        "import_s": round(imported - start, 2),
        "load_model_s": round(loaded - imported, 2),
        "segment_s_first": seconds[0],
        "segment_s_median": round(statistics.median(seconds), 3),
        "segment_cpu_s_median": round(statistics.median(cpu), 3),
        "process_total_s": round(time.perf_counter() - start, 2),
        "peak_rss_mb": peak_rss_mb(),
        "gland_ml": rows[0]["gland_ml"],
        "roi": rows[0]["roi"],
    }))


def _training(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick or args.skip_train:
        return {"skipped": True}
    import torch

    from medcl.pipelines.zones_bench_train import bench_training_throughput

    torch.set_num_threads(args.threads)
    return bench_training_throughput(device="cpu")


def _onnx_vs_eager(args: argparse.Namespace, ckpt: Path) -> dict[str, Any]:
    """The network's patch model on the flip-TTA batch of one ProstateX window (2 x 1 x 160 x 160 x 20)."""
    if args.skip_onnx:
        return {"skipped": True}
    import torch

    from medcl.export.onnx import ZonesPatchModel
    from medcl.pipelines.bench.engines import onnx_vs_eager
    from medcl.pipelines.zones_segment import ZonesSegmenter

    torch.set_num_threads(args.threads)
    net = ZonesSegmenter.from_checkpoint(ckpt, device="cpu").net
    x = torch.rand(2, 1, 160, 160, 20)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    return onnx_vs_eager(ZonesPatchModel(net), x, "zones", "image", ["probabilities"], {"image": axes},
                         args.threads, 1 if args.quick else 3)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the numbers (``medcl bench zones`` prints them as JSON)."""
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="medcl-bench-zones-") as tmp:
        work = Path(tmp)
        scan = Path(args.scan) if args.scan else _default_scan()
        source = str(scan) if scan else "synthetic 384x384x19 @ 0.5x0.5x3.0 mm"
        scan = scan or _synthetic_scan(work / "synthetic_t2.nii.gz")
        ckpt = Path(args.checkpoint) if args.checkpoint else _random_checkpoint(work / "random.ckpt")
        results = {name: _run_child(scan, ckpt, work / name, tta, args.threads, repeats, roi)
                   for name, tta, roi in (("tta", True, "auto"), ("no_tta", False, "auto"),
                                          ("tta_centred_roi", True, "center"))}
        engines = _onnx_vs_eager(args, ckpt)
    timed = results["tta"]
    return {
        "device": "cpu",
        "threads": args.threads,
        "scan": source,
        "checkpoint": args.checkpoint or "random weights, default dual-path config",
        "roi": "tta/no_tta: automatic ROI (coarse localisation pass, then >= 80 x 80 x 120 mm box around the "
        "gland); tta_centred_roi: the fixed centred box (the step before localisation existed)",
        **results,
        "target": {"segment_s": TARGET_SECONDS, "peak_rss_mb": TARGET_RSS_MB},
        "meets_target": "error" not in timed
        and timed["segment_s_median"] <= TARGET_SECONDS and timed["peak_rss_mb"] <= TARGET_RSS_MB,
        "onnxruntime_vs_eager": engines,
        "training": _training(args),
    }


if __name__ == "__main__" and len(sys.argv) == 9 and sys.argv[1] == "--child":
    _child(*sys.argv[2:])
