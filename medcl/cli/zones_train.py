"""``medcl zones train``: two-stage dual-path training from a YAML config (handler imports lazily)."""

from __future__ import annotations

import argparse

from medcl.cli._helpers import add_command, add_overrides


def _train(args: argparse.Namespace) -> int:
    from medcl.config import load_config
    from medcl.pipelines.zones import ZonesConfig, train

    cfg = load_config(ZonesConfig, args.config, args.overrides)
    checkpoint = train(cfg, args.out, resume=args.resume, stage=args.stage)
    print(f"medcl: zones model trained; checkpoint {checkpoint}")
    return 0


def register_train(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medcl zones train`` to the ``zones`` group's subparsers."""
    p = add_command(
        subparsers, "train", "train the dual-path zone network (stage 1, then co-training)", _train
    )
    p.add_argument("--config", help="YAML config (configs/zones/*.yaml); default: built-in defaults")
    p.add_argument("--out", default="runs/zones", help="run folder (default runs/zones)")
    p.add_argument("--resume", help="last.ckpt of an interrupted stage to continue from")
    p.add_argument(
        "--stage", choices=("1", "2", "both"), default="both", help="stage 1, stage 2 (co-training) or both"
    )
    add_overrides(p)
