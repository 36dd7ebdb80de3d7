"""The ``medcl`` command: one module per command group (``medcl/cli/<group>.py``, each with
``register(subparsers)``; shared parser helpers in :mod:`medcl.cli._helpers`), handlers import heavy
modules lazily. The CLI is the only part of ``medcl`` that imports ``medcl.pipelines``.

``medcl --help`` imports neither torch nor MONAI. User errors (:class:`medcl.errors.MedclError`)
print one line ``medcl: error: <file/key>: <problem>`` and exit 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import medcl
from medcl.errors import MedclError

# ``medcl GROUP``: modules with ``register(subparsers)``, in the order --help lists them.
GROUP_MODULES: tuple[str, ...] = (
    "medcl.cli.sepclr",
    "medcl.cli.zones",
    "medcl.cli.ecg",
    "medcl.cli.data",
    "medcl.cli.config",
    "medcl.cli.export",
    "medcl.cli.bench",
    "medcl.cli.demo",
    "medcl.cli.info",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medcl",
        description="Medical contrastive and prototype learning: SepCLR, prostate zones, ProtoECGNet.",
    )
    parser.add_argument("--version", action="version", version=f"medcl {medcl.__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    for module_name in GROUP_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        target = getattr(args, "group_parser", parser)
        target.print_help()
        return 0 if args.group is None else 2
    try:
        with _sigterm_interrupts():
            code = _run(handler, args)
    except MedclError as exc:
        if args.debug:
            raise
        print(f"medcl: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, a disk that is full...
        if args.debug or isinstance(exc, BrokenPipeError):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"medcl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("medcl: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("medcl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    return int(code or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's time limit, ``docker stop``) as an interrupt: the same clean-up as
    Ctrl-C runs (temp files removed, no half-written case, the output lock released), exit 143."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Raise :class:`Terminated` on SIGTERM meanwhile (Python's default is to die on the spot, leaving
    temp files, half-written outputs and a stale output lock behind); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(handler, args: argparse.Namespace) -> int:  # noqa: ANN001
    """Call the handler; ``--allow-nonuniform`` applies to every image it reads; the ``--out`` folder is
    written by this process only (:func:`medcl.utils.output_lock`)."""
    from medcl.utils import output_lock

    with output_lock(getattr(args, "out", None)):
        if not getattr(args, "allow_nonuniform", False):
            return handler(args)
        from medcl.io.image import allow_nonuniform_slices

        with allow_nonuniform_slices():
            return handler(args)

