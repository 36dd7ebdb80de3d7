"""Image I/O benchmark: read a 384x384x19 T2 scan and resample it to the canonical 0.5x0.5x3 mm grid.

Uses the real ProstateX T2 DICOM series from ``../shared/data`` when present (also written as an
int16 NIfTI), otherwise a synthetic volume with the same shape and spacing. ``bench_image_io`` is
called by ``medcl bench data``; the module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb

T2_SERIES = "mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"
SHAPE = (384, 384, 19)
SPACING = (0.5, 0.5, 3.0)


def _default_data_root() -> Path:
    return Path(os.environ.get("MEDCL_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


def _median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times), result


def _synthetic_reference() -> Any:
    import numpy as np
    import torch
    from monai.data import MetaTensor

    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    voxels = np.random.default_rng(0).integers(0, 1200, size=SHAPE).astype(np.float32)
    return MetaTensor(torch.from_numpy(voxels)[None], affine=torch.from_numpy(affine))


def bench_image_io(repeats: int = 5, data_root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Median ms per scan for DICOM/NIfTI reads and NIfTI read + canonical resample; peak RSS.

    Args:
        repeats: timed repetitions per measurement (after one warm-up).
        data_root: the shared data folder (default ``../shared/data`` or ``$MEDCL_SHARED_DATA``).
    """
    import numpy as np
    import torch

    from medcl.io.image import read_image, write_like
    from medcl.transforms.geometry import DEFAULT_PIXDIM, load_canonical

    series = Path(data_root or _default_data_root()) / T2_SERIES
    result: dict[str, Any] = {"source": "ProstateX-0000 T2 DICOM" if series.is_dir() else "synthetic"}
    if series.is_dir():
        result["dicom_read_ms"], reference = _median_ms(lambda: read_image(series), repeats)
    else:
        reference = _synthetic_reference()
    chain = load_canonical("image", pixdim=DEFAULT_PIXDIM)
    with tempfile.TemporaryDirectory() as tmp:
        nifti = write_like(reference, reference, Path(tmp) / "t2.nii.gz", dtype=np.int16)
        read_image(nifti)  # warm-up
        result["nifti_read_ms"], _ = _median_ms(lambda: read_image(nifti), repeats)
        result["nifti_canonical_ms"], out = _median_ms(lambda: chain({"image": str(nifti)}), repeats)
    result.update(
        input_shape=list(reference.shape[1:]),
        output_shape=list(out["image"].shape[1:]),
        target_spacing_mm=list(DEFAULT_PIXDIM),
        repeats=repeats,
        torch_threads=torch.get_num_threads(),
        peak_rss_mb=peak_rss_mb(),
    )
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the stand-alone benchmark."""
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    parser.add_argument("--data-root", default=None, help="shared data folder")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Entry point used by ``medcl bench``."""
    return bench_image_io(repeats=args.repeats, data_root=args.data_root)
