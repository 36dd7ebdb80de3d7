"""``medcl data``: write synthetic datasets and inspect scans or ECG records."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from medcl.cli._helpers import add_command, add_group
from medcl.errors import MedclError
from medcl.utils import non_negative_int, positive_float, positive_int

SYNTH_KINDS = ("prostate", "cohort", "texdigits", "ecg")
_ECG_SUFFIXES = (".hea", ".mat", ".dat")


def synth(kind: str, out: str | Path, n: int, seed: int) -> Path:
    """Call ``medcl.data.synthetic.<kind>.write_dataset(out, n, seed)`` and return the file it wrote."""
    if kind not in SYNTH_KINDS:
        raise MedclError(f"data synth: unknown kind {kind!r}; choose one of {', '.join(SYNTH_KINDS)}")
    if n < 1:
        raise MedclError(f"--n: must be at least 1, got {n}")
    module = importlib.import_module(f"medcl.data.synthetic.{kind}")
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


def list_series(path: str | Path) -> list[dict[str, Any]] | None:
    """The DICOM series of a folder holding several (``None`` for a file or a single-series folder)."""
    if not Path(path).is_dir():
        return None
    from medcl.io.image import list_dicom_series

    found = list_dicom_series(path)
    if len(found) < 2:
        return None
    return [{"uid": s.uid, "description": s.description, "files": len(s.files),
             "folder": str(Path(s.files[0]).parent)} for s in found]


def _datalist(args: argparse.Namespace) -> int:
    from medcl.data.layouts import build_datalist, parse_channel

    out, errors = build_datalist(
        args.root, args.layout, args.out, folds=args.folds, fold=args.fold, seed=args.seed, remap=args.remap,
        channel=parse_channel(args.channel), labels=args.labels, name=args.name,
    )
    print(f"medcl: wrote {out}" + (f"; {len(errors)} case(s) left out (see errors above)" if errors else ""))
    return 1 if errors else 0


def _inspect(args: argparse.Namespace) -> int:
    series = list_series(args.path) if args.series is None else None
    if series is not None:
        if args.json:
            print(json.dumps({"kind": "dicom-study", "path": str(args.path), "series": series}, indent=2))
        else:
            print(f"{args.path}: {len(series)} DICOM series (choose one with --series UID|description)")
            for s in series:
                print(f"  {s['uid']}  {s['description']!r}  {s['files']} files  {s['folder']}")
        return 0
    leads = [x.strip() for x in args.leads.split(",") if x.strip()] if args.leads else None
    summary = inspect(args.path, series=args.series, fs=args.fs, leads=leads)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``medcl data synth``, ``medcl data inspect`` and ``medcl data datalist``."""
    group = add_group(subparsers, "data", "synthetic datasets and scan/ECG inspection")
    synth_parser = add_command(group, "synth", "write a deterministic synthetic dataset", _synth)
    synth_parser.add_argument("kind", choices=SYNTH_KINDS, help="which generator")
    synth_parser.add_argument("--out", required=True, help="output folder")
    synth_parser.add_argument("--n", type=positive_int, default=10, help="number of cases/records (default 10)")
    synth_parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    inspect_parser = add_command(
        group, "inspect", "geometry/intensity of a scan, or header and leads of an ECG record", _inspect
    )
    inspect_parser.add_argument(
        "path", help="NIfTI/NRRD/MHA file, DICOM folder, or ECG (WFDB .hea, DICOM waveform, .h5, .xml, .npy/.csv)"
    )
    inspect_parser.add_argument("--series", default=None, help="DICOM series UID or description")
    inspect_parser.add_argument("--json", action="store_true", help="print as JSON")
    inspect_parser.add_argument("--fs", type=positive_float, help="sampling rate of a .npy/.csv ECG array")
    inspect_parser.add_argument("--allow-nonuniform", action="store_true",
                                help="resample a DICOM series with a missing slice or uneven slice spacing")
    inspect_parser.add_argument("--leads", help="comma-separated lead names of a .npy/.csv ECG array")
    from medcl.data.layout_names import LAYOUTS  # light: no numpy/torch for --help

    dl = add_command(group, "datalist", "datalist JSON (k folds) from a public data set folder as distributed",
                     _datalist)
    dl.add_argument("root", help="data set folder")
    dl.add_argument("--layout", required=True, choices=LAYOUTS, help="how the folder is organised")
    dl.add_argument("--out", required=True, help="datalist JSON to write")
    dl.add_argument("--folds", type=positive_int, default=5, help="k folds (monai partition_dataset; 1: all training)")
    dl.add_argument("--fold", type=non_negative_int, default=0, help="fold used as the validation list (default 0)")
    dl.add_argument("--seed", type=int, default=0, help="shuffle seed of the folds")
    dl.add_argument("--remap", default=None, help="declared label map SOURCE:ZONE,... (zones 1 PZ 2 TZ 3 DPU 4 AFS)")
    dl.add_argument("--channel", default=None,
                    help="channel of 4D images (MSD Task05: 0 T2, 1 ADC), or 0,1 for both as input channels")
    dl.add_argument("--labels", default=None, help="picai: folder of zonal label NIfTI files")
    dl.add_argument("--name", default=None, help="data set name recorded in the datalist (default layout:folder)")
