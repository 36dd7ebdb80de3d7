"""``medcl data``: write synthetic datasets and inspect scans or ECG records."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from medcl.commands import add_command, add_group
from medcl.errors import MedclError

SYNTH_KINDS = ("prostate", "cohort", "texdigits", "ecg")
_ECG_SUFFIXES = (".hea", ".mat", ".dat")


def synth(kind: str, out: str | Path, n: int, seed: int) -> Path:
    """Call ``medcl.data.synthetic.<kind>.write_dataset(out, n, seed)`` and return the file it wrote."""
    if kind not in SYNTH_KINDS:
        raise MedclError(f"data synth: unknown kind {kind!r}; choose one of {', '.join(SYNTH_KINDS)}")
    if n < 1:
        raise MedclError(f"--n: must be at least 1, got {n}")
    module_name = f"medcl.data.synthetic.{kind}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise MedclError(f"data synth {kind}: generator {module_name} is not available in this build") from None
    return Path(module.write_dataset(Path(out), n, seed))


def is_ecg_record(path: str | Path) -> bool:
    """An ECG: a WFDB ``.hea``/``.mat``/``.dat`` file or record name whose ``.hea`` exists, or another
    ECG format (:func:`medcl.io.ecg_formats.is_ecg_file`: DICOM waveform, HDF5, XML, arrays)."""
    from medcl.io.ecg_formats import is_ecg_file

    p = Path(path)
    if p.suffix.lower() in _ECG_SUFFIXES or (not p.exists() and p.with_name(p.name + ".hea").is_file()):
        return True
    return is_ecg_file(p)


def inspect(path: str | Path, series: str | None = None, fs: float | None = None,
            leads: list[str] | None = None) -> dict[str, Any]:
    """Summary of a scan (``medcl.io.image.inspect_image``) or an ECG record (``medcl.io.ecg.inspect_ecg``;
    ``fs``/``leads`` describe ``.npy``/``.csv`` arrays)."""
    if is_ecg_record(path):
        if series is not None:
            raise MedclError(f"{path}: --series applies only to DICOM folders")
        from medcl.io.ecg import inspect_ecg

        return {"kind": "ecg", **inspect_ecg(path, fs, leads)}
    from medcl.io.image import inspect_image

    return {"kind": "image", **inspect_image(path, series=series)}


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in value.items())
    return str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable ``key: value`` lines (the 4x4 affine and long comment lists are left to ``--json``)."""
    hidden = {"affine_ras", "comments"}
    width = max(len(k) for k in summary)
    return "\n".join(f"{k:>{width}}: {_format_value(v)}" for k, v in summary.items() if k not in hidden)


def _synth(args: argparse.Namespace) -> int:
    print(synth(args.kind, args.out, args.n, args.seed))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    leads = [x.strip() for x in args.leads.split(",") if x.strip()] if args.leads else None
    summary = inspect(args.path, series=args.series, fs=args.fs, leads=leads)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medcl data synth`` and ``medcl data inspect``."""
    group = add_group(subparsers, "data", "synthetic datasets and scan/ECG inspection")
    synth_parser = add_command(group, "synth", "write a deterministic synthetic dataset", _synth)
    synth_parser.add_argument("kind", choices=SYNTH_KINDS, help="which generator")
    synth_parser.add_argument("--out", required=True, help="output folder")
    synth_parser.add_argument("--n", type=int, default=10, help="number of cases/records (default 10)")
    synth_parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    inspect_parser = add_command(
        group, "inspect", "geometry/intensity of a scan, or header and leads of an ECG record", _inspect
    )
    inspect_parser.add_argument(
        "path", help="NIfTI/NRRD/MHA file, DICOM folder, or ECG (WFDB .hea, DICOM waveform, .h5, .xml, .npy/.csv)"
    )
    inspect_parser.add_argument("--series", default=None, help="DICOM series UID or description")
    inspect_parser.add_argument("--json", action="store_true", help="print as JSON")
    inspect_parser.add_argument("--fs", type=float, help="sampling rate of a .npy/.csv ECG array")
    inspect_parser.add_argument("--leads", help="comma-separated lead names of a .npy/.csv ECG array")
