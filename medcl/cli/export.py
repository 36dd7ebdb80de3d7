"""``medcl export``: checkpoint -> weights-only file, ONNX folder or zones MONAI bundle (lazy imports)."""

from __future__ import annotations

import argparse

from medcl.cli._helpers import add_command


def _export(args: argparse.Namespace) -> int:
    from medcl.pipelines.export import export

    path = export(args.checkpoint, args.format, args.out, exporter=args.exporter)
    print(f"medcl: {args.format} export written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(subparsers, "export", "export a model: weights-only safetensors, ONNX, or a MONAI bundle",
                    _export)
    p.add_argument("checkpoint", help="medcl checkpoint (.ckpt) or weights-only model.safetensors")
    p.add_argument("--format", required=True, choices=("weights", "onnx", "bundle"),
                   help="weights (any family), onnx (ecg, zones) or bundle (zones)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy",
                   help="ONNX exporter: legacy TorchScript-based (default, fast) or dynamo (torch.export, "
                        "needs onnxscript)")
