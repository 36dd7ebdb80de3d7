"""Peak memory of this process, as the benchmarks report it (one definition for every family)."""

from __future__ import annotations

import sys
from typing import Any


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MiB, one decimal (``ru_maxrss`` is KiB on Linux,
    bytes on macOS); ``None`` where the ``resource`` module is missing (Windows). Worker processes are
    not included."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def peak_memory_mb(device: Any = None) -> float | None:
    """Peak memory in MiB of the work on ``device``: ``torch.cuda.max_memory_allocated`` on a CUDA device,
    else the process's peak RSS (:func:`peak_rss_mb`)."""
    if device is not None and getattr(device, "type", str(device).split(":")[0]) == "cuda":
        import torch

        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return peak_rss_mb()
