"""SepCLR benchmark: probe quality of SepCLR vs SimCLR and two ablations, and training throughput.

``models``: each variant (``sepclr``; ``simclr`` baseline; ``lam0`` = no k-JEM; ``betareg0`` = no
information-less term) is trained on in-memory TexDigits and evaluated with the same linear probes
as ``medcl sepclr evaluate``. ``throughput``: one full SepCLR training step (two views, two
encoders, heads, loss, backward, Adam) of the 2D CIFAR-stem ResNet-18 pair (d = 32) at batch 64 and
256 (images/s, peak memory, GFLOP/s counted with ``torch.utils.flop_counter.FlopCounterMode``), and
volumes/s of the 3D encoder pair; channels-last + bf16 autocast on GPUs.
The module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, list[str]] = {
    "sepclr": [],
    "simclr": ["baseline=simclr"],
    "lam0": ["loss.lam=0"],
    "betareg0": ["loss.beta_reg=0"],
}
#: quick mode: 4 textures x 3 digits at a size that separates in a few CPU minutes.
QUICK_SUBSET = {"textures": [0, 1, 3, 6], "digits": [0, 1, 7]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench sepclr``."""
    parser.add_argument("--quick", action="store_true", help="small TexDigits subset on CPU (minutes)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--skip-models", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-throughput", action="store_true", help="only train/evaluate the variants")


#: settings shared by every TexDigits run (2D, images already in [0, 1], natural-image weights).
TEXDIGITS_BASE = ["data.spatial_dims=2", "data.spatial_size=[32,32]", "data.pixdim=null", "data.intensity=none",
                  "loss.preset=natural", "train.loggers=[]", "train.progress_bar=false"]  # fmt: skip


def model_overrides(quick: bool) -> list[str]:
    """TexDigits config overrides of the benchmarked model: a tiny fast-separating one in quick mode."""
    if quick:
        return [*TEXDIGITS_BASE, "model.depth=10", "model.width=8", "model.cifar_stem=false", "data.batch_size=32",
                "optim.lr=2e-3", "train.max_epochs=8"]  # fmt: skip
    return [*TEXDIGITS_BASE, "model.depth=18", "model.width=64", "model.cifar_stem=true", "data.batch_size=256",
            "train.max_epochs=50"]  # fmt: skip


def texdigits_split(quick: bool):
    """In-memory TexDigits train/test sets (quick: 320/160 images of the 4 x 3 subset)."""
    from medcl.data.synthetic.texdigits import make_texdigits

    kw = QUICK_SUBSET if quick else {}
    n = 320 if quick else 4000
    return make_texdigits(n, 0, "train", **kw), make_texdigits(n // 2, 0, "test", **kw)


def texdigits_table(train, test):
    """The manifest-like table (group, texture, digit, split) of the train then test rows."""
    import numpy as np
    import pandas as pd

    parts = [
        pd.DataFrame({"group": np.where(d.group == 1, "target", "background"), "texture": d.texture,
                      "digit": np.where(d.digit >= 0, d.digit, np.nan), "split": name})  # fmt: skip
        for name, d in (("train", train), ("test", test))
    ]
    return pd.concat(parts, ignore_index=True)


def train_and_evaluate(overrides: list[str], images, groups, table, out: Path) -> dict:
    """Train on the ``split == "train"`` rows of in-memory ``images`` through the engine, embed all
    rows, and return their evaluation (plus the training seconds).

    Args:
        overrides: SepCLR config overrides (data shape, model, loss, train settings).
        images: ``(n, 1, *spatial)`` array; ``groups``: ``(n,)`` 0/1.
        table: ``n`` rows with ``group``, attributes and ``split``.
        out: run folder (checkpoints).
    """
    from medcl.config import load_config
    from medcl.pipelines.sepclr import (
        SepCLRConfig,
        embed_records,
        embeddings_table,
        evaluate_table,
        fit_records,
        load_net,
    )

    cfg = load_config(SepCLRConfig, None, overrides)
    train = (table["split"] == "train").to_numpy()
    records = [{"image": im, "group": int(g)} for im, g in zip(images[train], groups[train])]
    t0 = time.perf_counter()
    net, cfg = load_net(fit_records(cfg, records, out, load=False))
    seconds = time.perf_counter() - t0
    feats = embed_records(net, cfg, [{"image": im} for im in images], load=False)
    return {**evaluate_table(embeddings_table(table, feats), None), "train_seconds": round(seconds, 1)}


def texdigits_arrays(train, test):
    """Images and groups of the train then test TexDigits rows (the order of :func:`texdigits_table`)."""
    import numpy as np

    return np.concatenate([train.images, test.images]), np.concatenate([train.group, test.group])


def _models(quick: bool) -> dict[str, dict]:
    train, test = texdigits_split(quick)
    table = texdigits_table(train, test)
    images, groups = texdigits_arrays(train, test)
    overrides = model_overrides(quick)
    with tempfile.TemporaryDirectory() as tmp:
        return {
            name: train_and_evaluate(overrides + extra, images, groups, table, Path(tmp) / name)
            for name, extra in VARIANTS.items()
        }


def _peak_memory_mb(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_step(net, loss, opt, x, labels, amp_dtype) -> None:
    import torch

    with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        o1, o2 = net(x), net(x.flip(-1))
    total = loss(o1.zc.float(), o2.zc.float(), o1.zs.float(), o2.zs.float(), labels)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()


def _time_steps(net, x, labels, steps: int, amp_dtype) -> dict[str, float]:
    """Seconds per training step (after one warm-up step) and FLOPs of one step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medcl.losses.sepclr import SepCLRLoss

    loss, opt = SepCLRLoss.from_preset("natural"), torch.optim.Adam(net.parameters(), lr=3e-4)
    counter = FlopCounterMode(display=False)
    with counter:
        _train_step(net, loss, opt, x, labels, amp_dtype)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        _train_step(net, loss, opt, x, labels, amp_dtype)
    sync()
    return {"seconds": (time.perf_counter() - t0) / steps, "flops": float(counter.get_total_flops())}


def _throughput_case(spatial: tuple[int, ...], batch: int, steps: int, device, width: int, depth: int) -> dict:
    import torch

    from medcl.engine.device import autocast_dtype
    from medcl.nets.sepclr import SepCLRNet

    torch.manual_seed(0)
    net = SepCLRNet(32, 32, spatial_dims=len(spatial), depth=depth, width=width, cifar_stem=True).to(device)
    x = torch.rand(batch, 1, *spatial, device=device)
    if len(spatial) == 2:  # as in training: channels-last 2D (faster with oneDNN on CPU and on GPUs)
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    labels = (torch.arange(batch, device=device) % 2).long()
    timing = _time_steps(net, x, labels, steps, autocast_dtype(device))
    return {
        "batch": batch,
        "images_per_s": round(batch / timing["seconds"], 2),
        "views_per_s": round(2 * batch / timing["seconds"], 2),
        "encoder_passes_per_s": round(4 * batch / timing["seconds"], 2),
        "seconds_per_step": round(timing["seconds"], 3),
        "gflop_per_step": round(timing["flops"] / 1e9, 2),
        "achieved_gflop_s": round(timing["flops"] / 1e9 / timing["seconds"], 2),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
    }


def _throughput(quick: bool, device) -> dict[str, Any]:
    steps = 2 if quick else 10
    size = (32, 32, 32) if quick else (64, 64, 64)
    three_d = _throughput_case(size, 8, steps, device, width=16, depth=10)  # smallest first: CPU peak RSS grows
    two_d = [_throughput_case((32, 32), b, steps, device, width=64, depth=18) for b in (64, 256)]
    return {
        "resnet18_cifar_2d_pair_d32": two_d,
        "resnet10_3d_pair_d32": {"spatial_size": list(size), **three_d},
        "memory": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "process peak RSS so far (ru_maxrss)",
        "note": "one SepCLR step = 2 views x (common + salient encoder) forward+backward + Adam; "
        "images_per_s counts input samples per second, views_per_s the augmented views (2 per sample), "
        "encoder_passes_per_s single-encoder forward+backward passes (4 per sample)",
    }


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; returns ``{"models", "throughput", "device", ...}``."""
    import torch

    from medcl.engine.device import autocast_dtype, pick_device

    torch.set_num_threads(args.threads)
    device = pick_device("auto")
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} threads)",
        "precision": str(autocast_dtype(device) or torch.float32),
        "quick": bool(args.quick),
    }
    if not args.skip_models:
        result["models"] = _models(args.quick)
    if not args.skip_throughput:
        result["throughput"] = _throughput(args.quick, device)
    return result
