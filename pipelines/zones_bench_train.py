"""Training throughput of the dual-path zones network (for ``medcl bench zones``).

:func:`bench_training_throughput` generates a few phantoms, builds the real training chain
(:func:`medcl.pipelines.zones.build_loaders`) and times optimiser steps of the stage-2 objective
(supervised + consistency) with data loading included; it reports patches per second and the
process's peak resident memory.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb

__all__ = ["bench_training_throughput"]


def _steps(module: Any, loader: Any, optimizer: Any, n_steps: int, device: Any) -> int:
    """Run ``n_steps`` stage-2 optimiser steps over ``loader`` (cycled); return the patches seen."""
    patches, done = 0, 0
    while done < n_steps:
        for batch in loader:
            x, y = batch["image"].to(device), batch["label"].to(device)
            out = module.net(x)
            loss = module.supervised(out, y) + module.consistency(out["a"], out["b"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            patches, done = patches + x.shape[0], done + 1
            if done == n_steps:
                break
    return patches


def bench_training_throughput(
    n_steps: int = 6,
    patch_size: tuple[int, int, int] = (64, 64, 8),
    filters: tuple[int, ...] = (16, 32, 64),
    batch_size: int = 2,
    samples_per_volume: int = 2,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Time training steps of the dual-path net on phantoms (one warm-up step excluded).

    Args:
        n_steps: timed optimiser steps.
        patch_size: training patch (voxels, 0.5 x 0.5 x 3 mm).
        filters: channels per level (3 levels: in-plane pooling, then full pooling).
        batch_size: volumes per batch; patches per step = ``batch_size * samples_per_volume``.
        samples_per_volume: patches per volume.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        seed: phantom and training seed.

    Returns:
        ``{"patches_per_s", "s_per_step", "peak_rss_mb", "n_steps", "patch_size", "filters",
        "patches_per_step", "device", "threads"}``.
    """
    import torch

    from medcl.data.synthetic.prostate import write_dataset
    from medcl.engine import pick_device
    from medcl.pipelines.zones import ZonesConfig, ZonesModule, build_loaders

    dev = pick_device(device)
    cfg = ZonesConfig.model_validate(
        {
            "train": {"seed": seed},
            "data": {
                "patch_size": list(patch_size),
                "batch_size": batch_size,
                "samples_per_volume": samples_per_volume,
            },
            "model": {
                "filters": list(filters),
                "kernel_sizes": [[3, 3, 1], [3, 3, 1], [3, 3, 3]],
                "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2]],
            },
        }
    )
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        datalist = write_dataset(Path(tmp) / "phantoms", n=batch_size + 1, seed=seed, n_validation=1)
        loader = build_loaders(cfg, datalist, 1, Path(tmp) / "cache")["train"]
        module = ZonesModule(cfg, stage=2).to(dev)
        optimizer = torch.optim.AdamW(module.net.parameters(), lr=cfg.optim.lr)
        _steps(module, loader, optimizer, 1, dev)  # warm-up
        start = time.perf_counter()
        patches = _steps(module, loader, optimizer, n_steps, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elapsed = time.perf_counter() - start
    return {
        "patches_per_s": round(patches / elapsed, 3),
        "s_per_step": round(elapsed / n_steps, 4),
        "peak_rss_mb": peak_rss_mb(),
        "n_steps": n_steps,
        "patch_size": list(patch_size),
        "filters": list(filters),
        "patches_per_step": batch_size * samples_per_volume,
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }
