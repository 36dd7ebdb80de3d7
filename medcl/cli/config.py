"""``medcl config``: print resolved defaults and validate YAML files against a pipeline schema."""

from __future__ import annotations

import argparse
import importlib

from medcl.cli._helpers import add_command, add_group, add_overrides
from medcl.errors import MedclError

# pipeline name -> "module:Class" of its schema (imported only when used)
SCHEMAS: dict[str, str] = {
    "sepclr": "medcl.pipelines.sepclr:SepCLRConfig",
    "zones": "medcl.pipelines.zones:ZonesConfig",
    "ecg": "medcl.pipelines.ecg:ECGConfig",
}


def schema_for(pipeline: str) -> type:
    if pipeline not in SCHEMAS:
        raise MedclError(f"{pipeline}: unknown pipeline (choose from {', '.join(SCHEMAS)})")
    module_name, cls_name = SCHEMAS[pipeline].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def _show(args: argparse.Namespace) -> int:
    from medcl.config import dump_config, load_config

    cfg = load_config(schema_for(args.pipeline), args.config, args.overrides)
    print(dump_config(cfg), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from medcl.config import load_config

    for path in args.files:
        load_config(schema_for(args.pipeline), path)
        print(f"{path}: ok ({args.pipeline})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "config", "show and validate pipeline configs")
    show = add_command(sub, "show", "print the fully resolved config of a pipeline as YAML", _show)
    show.add_argument("pipeline", help=f"one of: {', '.join(SCHEMAS)}")
    show.add_argument("--config", help="YAML file to resolve (default: built-in defaults)")
    add_overrides(show)
    val = add_command(sub, "validate", "check YAML files against a pipeline's schema", _validate)
    val.add_argument("pipeline", help=f"one of: {', '.join(SCHEMAS)}")
    val.add_argument("files", nargs="+", help="YAML files")
