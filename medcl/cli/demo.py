"""``medcl demo``: train every family briefly on built-in data and write every kind of output."""

from __future__ import annotations

import argparse

from medcl.cli._helpers import add_command


def _demo(args: argparse.Namespace) -> int:
    from medcl.pipelines.demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick, families=args.only)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "demo", "train every family briefly on built-in data and write all outputs", _demo
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--quick", action="store_true", help="smallest sizes (under 5 minutes on 2 CPU cores)")
    parser.add_argument(
        "--only", nargs="+", choices=["sepclr", "zones", "ecg"], default=None, help="run only these families"
    )
