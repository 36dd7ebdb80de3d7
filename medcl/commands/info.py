"""``medcl info``: package versions, compute devices and thread settings."""

from __future__ import annotations

import argparse
import json

from medcl.commands import add_command


def collect_info() -> dict:
    import os

    import torch

    from medcl.engine.checkpoint import versions
    from medcl.engine.device import default_precision

    devices = [
        {"index": i, "name": torch.cuda.get_device_name(i), "bf16": torch.cuda.is_bf16_supported()}
        for i in range(torch.cuda.device_count())
    ]
    return {
        "versions": versions(),
        "cuda_available": torch.cuda.is_available(),
        "gpus": devices,
        "default_precision": default_precision(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def _info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info["versions"].items():
        print(f"{key:>18}: {value}")
    gpus = ", ".join(g["name"] for g in info["gpus"]) or "none"
    print(f"{'gpus':>18}: {gpus}")
    for key in ("default_precision", "torch_threads", "cpu_count", "omp_num_threads"):
        print(f"{key:>18}: {info[key]}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "info", "versions, devices and threads", _info)
    parser.add_argument("--json", action="store_true", help="print as JSON")
