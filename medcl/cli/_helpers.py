"""Parser helpers shared by the command groups in ``medcl/cli/<group>.py`` (each group module has
``register(subparsers)``; handlers import lazily)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_group(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """Add a command group ``medcl NAME`` and return its own subparsers."""
    group = subparsers.add_parser(name, help=help, description=help)
    group.set_defaults(group_parser=group)
    return group.add_subparsers(dest="command", metavar="SUBCOMMAND")


def add_command(
    subparsers: argparse._SubParsersAction, name: str, help: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Add ``medcl GROUP NAME`` with ``handler(args) -> exit code``."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(handler=handler)
    return parser


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Trailing ``key.sub=value`` config overrides."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.max_epochs=3")


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (resolved by :func:`medcl.engine.device.pick_device`)."""
    parser.add_argument("--device", default="auto", help="auto (GPU if present, else CPU), cpu, cuda, cuda:1")


def add_allow_nonuniform(parser: argparse.ArgumentParser) -> None:
    """``--allow-nonuniform``: resample DICOM series with a missing slice or uneven spacing (default: refuse)."""
    parser.add_argument("--allow-nonuniform", action="store_true",
                        help="resample DICOM series with a missing slice or uneven slice spacing (default: refuse them)")
