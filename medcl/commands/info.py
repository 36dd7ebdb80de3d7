"""``medcl info``: package versions, compute devices and thread settings; ``medcl info CKPT``: the model card."""

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


def _card(path: str, as_json: bool) -> int:
    from medcl.engine.model_card import format_card, read_card

    family, card = read_card(path)
    if as_json:
        print(json.dumps({"checkpoint": path, "family": family, "model_card": card}, indent=2))
    else:
        print(f"checkpoint: {path} (family {family})")
        print(format_card(card))
    return 0


def _info(args: argparse.Namespace) -> int:
    if args.checkpoint:
        return _card(args.checkpoint, args.json)
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
    parser = add_command(subparsers, "info", "versions, devices and threads; or a checkpoint's model card", _info)
    parser.add_argument("checkpoint", nargs="?", default=None, help="a medcl checkpoint: show its model card")
    parser.add_argument("--json", action="store_true", help="print as JSON")
