"""``medcl info``: package versions, compute devices and thread settings; ``medcl info FILE``: a model card."""

from __future__ import annotations

import argparse
import json

from medcl.cli._helpers import add_command


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


def model_card_of(path: str) -> dict:
    """The model card of a ``.ckpt``, weights-only file, ONNX export folder or zones MONAI bundle."""
    from pathlib import Path

    from medcl.errors import MedclError

    p = Path(path)
    if (p / "configs" / "metadata.json").is_file():
        from medcl.export.bundle import read_bundle_metadata

        return read_bundle_metadata(p)
    if p.suffix == ".onnx" or (p / "model.onnx").is_file():
        from medcl.export.onnx import read_onnx_card

        return read_onnx_card(p)[1]
    from medcl.engine.weights import is_weights_path, model_card, read_card

    if is_weights_path(p):
        return read_card(p)
    if p.is_dir():
        raise MedclError(f"{p}: no model here (a .ckpt, model.safetensors, ONNX export or MONAI bundle)")
    from medcl.engine.checkpoint import load_model_checkpoint

    return model_card(load_model_checkpoint(p, None))


def training_card(full: dict) -> dict | None:
    """The training-provenance card (:mod:`medcl.engine.model_card`) inside any file's full card."""
    for holder in (full, full.get("medcl") or {}):
        card = (holder.get("extra") or {}).get("model_card")
        if card:
            return card
    return None


def _show(path: str, as_json: bool) -> int:
    from medcl.engine.model_card import format_card

    full = model_card_of(path)
    card = training_card(full)
    if as_json:
        print(json.dumps({**full, "model_card": card}, indent=2))
    else:
        family = full.get("family") or (full.get("medcl") or {}).get("family")
        print(f"model: {path} (family {family})")
        print(format_card(card))
    return 0


def _info(args: argparse.Namespace) -> int:
    if args.file:
        return _show(args.file, args.json)
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
    parser = add_command(subparsers, "info", "versions, devices and threads; or a model's card", _info)
    parser.add_argument("file", nargs="?", help="a .ckpt, model.safetensors, ONNX export or MONAI bundle: "
                        "show its model card (--json: the whole card)")
    parser.add_argument("--json", action="store_true", help="print as JSON")
