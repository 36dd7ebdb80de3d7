"""Data benchmark: PTB-XL-shaped ECG loading (cache build vs cached load vs per-record wfdb reads).

Writes a synthetic PTB-XL folder (``medcl.data.synthetic.ecg``), then times
(1) reading records one by one with ``wfdb.rdsamp`` alone, (2) the reference loader's per-record
work, re-implemented with no medcl code: ``wfdb.rdsamp`` + 0.5 Hz first-order Butterworth high-pass,
zero phase (what the ProtoECGNet loader does per record), (3) ``medcl.io.ecg.read_ecg`` per record
(wfdb + resample + high-pass), (4) the first ``PTBXL`` load, which builds the memory-mapped cache,
and (5) a cached load (a fresh ``PTBXL`` object: database parsing, cache-key check, all arrays into
memory) and a full pass of its torch ``DataLoader``. (2) and (3) are timed side by side (interleaved
repeats, :mod:`medcl.pipelines.bench.timing`); the ratios against the reference use its median. Also runs the image I/O benchmark (``medcl.pipelines.bench.data_image``) when present.
The module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb
from medcl.pipelines.bench.timing import interleaved, rate_summary

MIN_SPEEDUP = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench data``."""
    parser.add_argument("--n", type=int, default=2000, help="synthetic PTB-XL records (default 2000)")
    parser.add_argument("--fs", type=int, default=100, choices=(100, 500), help="sampling rate")
    parser.add_argument("--workers", type=int, default=None, help="cache-building processes (default: CPUs, <= 8)")
    parser.add_argument("--wfdb-sample", type=int, default=300, help="records timed for per-record reads")
    parser.add_argument("--work-dir", default=None, help="folder for the synthetic data and cache (default: temp)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the per-record reads")
    parser.add_argument("--quick", action="store_true", help="200 records, 100 timed reads")
    parser.add_argument("--skip-image", action="store_true", help="do not run the image I/O benchmark")


def _timed(fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _per_record_rate(paths: list[Path], read) -> float:
    seconds, _ = _timed(lambda: [read(p) for p in paths])
    return len(paths) / seconds


def reference_read_filter(path: str, cutoff_hz: float = 0.5):
    """The reference loader's work for one record: ``wfdb.rdsamp`` and a zero-phase first-order
    Butterworth high-pass (``scipy.signal.filtfilt``) over samples; no medcl code."""
    import wfdb
    from scipy.signal import butter, filtfilt

    signal, fields = wfdb.rdsamp(path)
    b, a = butter(1, cutoff_hz, btype="highpass", fs=fields["fs"])
    return filtfilt(b, a, signal, axis=0).astype("float32")


def _loader_pass(dataset) -> float:
    from torch.utils.data import DataLoader

    seconds, _ = _timed(lambda: [None for _ in DataLoader(dataset, batch_size=64, num_workers=0)])
    return len(dataset) / seconds


def bench_ecg_io(n: int, fs: int, workers: int | None, wfdb_sample: int, work_dir: Path,
                 repeats: int = 3) -> dict[str, Any]:
    """Time ECG loading on ``n`` synthetic PTB-XL records under ``work_dir``; returns the numbers."""
    import wfdb

    from medcl.data.ecg_cache import effective_workers
    from medcl.data.ptbxl import PTBXL
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.io.ecg import read_ecg

    root, cache = work_dir / "ptbxl", work_dir / "cache"
    t_write, _ = _timed(lambda: write_dataset(root, n, seed=0))
    first = PTBXL(root, fs=fs, cache_dir=cache, workers=workers)
    t_build, _ = _timed(lambda: first.signals)
    paths = first.record_paths[:wfdb_sample]
    wfdb_rate = _per_record_rate(paths, lambda p: wfdb.rdsamp(str(p)))
    per_record = interleaved({
        "reference": lambda: [reference_read_filter(str(p)) for p in paths],
        "medcl_read_ecg": lambda: [read_ecg(p, fs=fs, n_samples=10 * fs) for p in paths],
    }, repeats=repeats, warmup=0)  # fmt: skip
    reference = rate_summary(per_record["reference"], len(paths))
    medcl_read = rate_summary(per_record["medcl_read_ecg"], len(paths))
    medcl_rate = float(medcl_read["median"])

    def cached_load():
        data = PTBXL(root, fs=fs, cache_dir=cache, workers=workers)
        return data, data.arrays("all")

    runs = []
    for _ in range(5):  # median of 5, garbage collector paused while timing (as timeit does)
        gc.collect()
        gc.disable()
        try:
            runs.append(_timed(cached_load))
        finally:
            gc.enable()
    t_cached = statistics.median(t for t, _ in runs)
    cached = rate_summary([t for t, _ in runs], n)
    data, (x, _) = runs[-1][1]
    del runs[:-1]
    if data.cache.npy != first.cache.npy:
        raise RuntimeError("cached load rebuilt the cache")
    cached_rate = len(x) / t_cached
    return {
        "records": n,
        "fs": fs,
        "array_shape": list(x.shape),
        "write_synthetic_s": round(t_write, 2),
        "wfdb_rdsamp_records_per_s": round(wfdb_rate, 1),
        "reference_read_filter_records_per_s": reference,
        "read_ecg_records_per_s": medcl_read,
        "per_record_timing": f"{len(paths)} records, {repeats} interleaved repeats (median [min-max])",
        "first_load_workers": effective_workers(workers, n),
        "first_load_cache_build_s": round(t_build, 2),
        "first_load_records_per_s": round(n / t_build, 1),
        "cached_load_s": round(t_cached, 3),
        "cached_load_timing": "median of 5, gc paused",
        "cached_load_records_per_s": cached,
        "cached_dataloader_records_per_s": round(_loader_pass(data.dataset("train")), 1),
        "speedup_cached_vs_wfdb": round(cached_rate / wfdb_rate, 1),
        "speedup_cached_vs_read_ecg": round(cached_rate / medcl_rate, 1),
        "speedup_first_load_vs_reference": round(n / t_build / float(reference["median"]), 2),
        "speedup_cached_vs_reference": round(cached_rate / float(reference["median"]), 1),
        # the target compares with the reference loader's per-record read plus filtering
        "meets_min_speedup": cached_rate / float(reference["median"]) >= MIN_SPEEDUP,
        "min_speedup": MIN_SPEEDUP,
        "cache_mb": round(data.cache.npy.stat().st_size / 2**20, 1),
    }


def table_rows(ecg: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``medcl bench all`` prints: medcl's first (cache-building) and cached loads against
    the reference loader's per-record read + filter, in records/s."""
    reference = ecg["reference_read_filter_records_per_s"]
    return [
        {"figure": f"ecg load + filter, {ecg['records']} records, first load ({ecg['first_load_workers']} workers)",
         "unit": "records/s", "reference": reference, "medcl": ecg["first_load_records_per_s"],
         "ratio": ecg["speedup_first_load_vs_reference"]},
        {"figure": f"ecg load + filter, {ecg['records']} records, cached load", "unit": "records/s",
         "reference": reference, "medcl": ecg["cached_load_records_per_s"], "ratio": ecg["speedup_cached_vs_reference"]},
    ]  # fmt: skip


def _image_io() -> dict[str, Any]:
    try:
        from medcl.pipelines.bench.data_image import bench_image_io
    except ImportError as exc:
        return {"skipped": f"image I/O benchmark not available ({exc})"}
    return bench_image_io()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Entry point used by ``medcl bench data``."""
    n, sample = (200, 100) if args.quick else (args.n, args.wfdb_sample)
    with tempfile.TemporaryDirectory(prefix="medcl-bench-data-", dir=args.work_dir) as tmp:
        ecg = bench_ecg_io(n, args.fs, args.workers, min(sample, n), Path(tmp), args.repeats)
    result: dict[str, Any] = {"ecg": ecg, "table": table_rows(ecg)}
    if not args.skip_image:
        result["image"] = _image_io()
    result["peak_rss_mb"] = peak_rss_mb()  # decoding workers are separate processes, not included
    return result
