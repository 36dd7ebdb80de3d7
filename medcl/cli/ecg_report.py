"""``medcl ecg report``: clinician-facing HTML prototype reports (registered by ``medcl.cli.ecg``)."""

from __future__ import annotations

import argparse
import sys

from medcl.cli._helpers import add_command
from medcl.utils import positive_int


def _report(args: argparse.Namespace) -> int:
    from medcl.cli.ecg import array_options
    from medcl.pipelines.ecg_report import write_reports

    index = write_reports(
        args.records, args.checkpoint, args.out, batch_size=args.batch_size, ig_steps=args.ig_steps,
        source_roots=args.source_root, pdf=args.pdf, **array_options(args),
    )
    print(index)
    failed = _failures(index)
    for failure in failed:
        print(f"medcl: error: skipped {failure.get('record')}: {failure.get('error')}", file=sys.stderr)
    return 1 if failed else 0


def _failures(index) -> list[dict]:  # noqa: ANN001
    """The failed records listed in the ``report.json`` beside ``index``."""
    import json
    from pathlib import Path

    report = Path(index).with_name("report.json")
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return []
    return [r for r in data.get("records", []) if r.get("status") != "ok"]


def register_report(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``medcl ecg report RECORD_OR_FOLDER... --checkpoint CKPT --out DIR``."""
    parser = add_command(
        subparsers, "report",
        "Write one self-contained HTML report per ECG (12-lead plot, findings, prototypes, attributions), "
        "index.html and report.json.",
        _report,
    )
    parser.add_argument("records", nargs="+", metavar="RECORD_OR_FOLDER",
                        help="ECG files of any supported format (see `medcl ecg predict -h`) or folders")
    parser.add_argument("--checkpoint", required=True, help="ProtoECGNet checkpoint (medcl ecg train)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="model batch size (default 32)")
    parser.add_argument("--ig-steps", type=positive_int, default=32, help="Integrated Gradients steps (default 32)")
    parser.add_argument("--source-root", action="append", default=[], metavar="DIR",
                        help="folder holding the prototypes' training records (repeatable)")
    parser.add_argument("--pdf", action="store_true", help="also print each report to PDF (headless Chromium)")
    from medcl.cli.ecg import add_array_options

    add_array_options(parser)
    return parser
