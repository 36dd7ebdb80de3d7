"""onnxruntime vs PyTorch eager throughput of one network on one batch (CPU), shared by the benchmarks.

The model is exported with :func:`medcl.export.onnx.export_onnx` into a temporary folder, both
engines get a warm-up call, then ``repeats`` timed calls each on the same batch; the result has
the medians, items per second, the speed-up of onnxruntime and the largest absolute difference
of the first output. The module top level imports nothing heavy.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def onnx_vs_eager(model, example, family: str, input_name: str, output_names: list[str],
                  dynamic_axes: dict[str, dict[int, str]], threads: int, repeats: int = 3) -> dict[str, Any]:
    """Time ``model(example)`` in PyTorch (inference mode) and in onnxruntime (``threads`` intra-op threads)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"skipped": "onnxruntime not installed (pip install 'medcl[export]')"}
    import numpy as np
    import torch

    from medcl.export.onnx import OnnxModel, export_onnx

    model = model.eval()
    with tempfile.TemporaryDirectory(prefix="medcl-bench-onnx-") as tmp:
        start = time.perf_counter()
        path = export_onnx(model, example, Path(tmp), input_name, output_names, dynamic_axes, {"family": family})
        export_s = time.perf_counter() - start
        ort = OnnxModel(tmp, family, threads=threads)
        with torch.inference_mode():
            first = model(example)
            ref = (first[0] if isinstance(first, tuple) else first).numpy()
            eager_s = _median_seconds(lambda: model(example), repeats)
        got = ort(example)[0]
        ort_s = _median_seconds(lambda: ort(example), repeats)
        size_mb = path.stat().st_size / 2**20
    n = int(example.shape[0])
    return {
        "batch": n, "input_shape": list(example.shape), "threads": threads, "repeats": repeats,
        "eager_s": eager_s, "onnxruntime_s": ort_s,
        "eager_items_per_s": n / eager_s, "onnxruntime_items_per_s": n / ort_s,
        "onnxruntime_speedup": round(eager_s / ort_s, 3),
        "max_abs_diff": float(np.abs(got - ref).max()), "onnx_mb": round(size_mb, 2), "export_s": round(export_s, 2),
    }
