"""``medcl sepclr``: train / embed / evaluate / explain (SepCLR, Louiset et al. ICLR 2024).

Heavy modules (torch, monai, the pipeline) are imported inside the handlers so that
``medcl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

from medcl.cli._helpers import add_allow_nonuniform, add_command, add_group, add_overrides


def _train(args: argparse.Namespace) -> int:
    from medcl.config import load_config
    from medcl.pipelines.sepclr import SepCLRConfig, train

    overrides = list(args.overrides)
    if args.baseline:
        overrides.append(f"baseline={args.baseline}")
    cfg = load_config(SepCLRConfig, args.config, overrides)
    ckpt = train(cfg, args.out, resume=args.resume)
    print(f"checkpoint: {ckpt}")
    return 0


def _embed(args: argparse.Namespace) -> int:
    from medcl.pipelines.sepclr import embed

    print(f"embeddings: {embed(args.checkpoint, args.manifest, args.out)}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from medcl.pipelines.sepclr import evaluate

    result = evaluate(args.embeddings, args.out, seed=args.seed, protocol=args.protocol)
    print(json.dumps({k: result[k] for k in ("protocol", "bg_tg", "salient_norm")}, indent=2))
    print(f"evaluation: {args.out}/evaluation.json")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from medcl.pipelines.sepclr import explain

    paths = explain(args.checkpoint, args.manifest, args.out)
    print(f"{len(paths)} attribution maps in {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medcl sepclr {train,embed,evaluate,explain}``."""
    group = add_group(subparsers, "sepclr", "SepCLR: separate common from salient (target-only) patterns")

    p = add_command(group, "train", "train the common/salient encoders on a manifest", _train)
    p.add_argument("--config", help="YAML config (configs/sepclr/*.yaml); defaults when omitted")
    p.add_argument("--out", default="runs/sepclr", help="run folder (checkpoints, logs, config.yaml)")
    p.add_argument("--resume", help="checkpoint to resume training from")
    p.add_argument("--baseline", choices=["simclr"], help="train the SimCLR baseline instead")
    add_allow_nonuniform(p)
    add_overrides(p)

    p = add_command(group, "embed", "write embeddings.csv (c_*, s_*) for every manifest row", _embed)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True, help="CSV with a path column (group/attributes optional)")
    p.add_argument("--out", required=True)
    add_allow_nonuniform(p)

    p = add_command(group, "evaluate", "linear probes, bg/tg accuracy, salient norms, PCA plots", _evaluate)
    p.add_argument("--embeddings", required=True, help="embeddings.csv from 'medcl sepclr embed'")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--protocol", choices=["paper", "medcl"], default="medcl",
                   help="paper: the official SepCLR probes (target rows only, unscaled LR accuracy / LinearRegression "
                   "MAE, bg/tg on projection-head outputs); medcl: standardised probes, balanced accuracy")  # fmt: skip

    p = add_command(group, "explain", "Integrated-Gradients maps of ||s|| for target scans (NIfTI overlays)", _explain)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    add_allow_nonuniform(p)
