"""``medcl bench NAME``: each benchmark prints throughput and peak memory as JSON.

Benchmarks live in ``medcl.pipelines.bench.<name>`` with ``add_arguments(parser)`` and
``run(args) -> dict`` (their top level imports nothing heavy).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from medcl.cli._helpers import add_command, add_group

BENCHES: dict[str, str] = {
    "data": "ECG cache vs wfdb reads; NIfTI load + canonical resample",
    "sepclr": "SepCLR probes (SepCLR, SimCLR, ablations) and training throughput",
    "zones": "segment time per real T2 scan, peak RSS, training patches/s",
    "ecg": "ProtoECGNet training samples/s per branch, projection time, predict records/s",
    "report": "ECG report rendering: seconds per report, reports/min",
    "ecg-real": "ProtoECGNet vs a plain 1D ResNet on 414 real PTB-XL ECGs: AUROC by three estimators, cross-source",
    "zones-real": "leave-one-out zones accuracy on the real Prostate158 sample; keeps the all-case model",
}


def _module(name: str) -> str:
    """Module (and JSON file) name of a benchmark: ``ecg-real`` -> ``ecg_real``."""
    return name.replace("-", "_")


def _available() -> dict[str, object]:
    return {name: importlib.import_module(f"medcl.pipelines.bench.{_module(name)}") for name in BENCHES}


def _emit(name: str, result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if out:
        from medcl.utils import write_json

        write_json(Path(out) / f"{_module(name)}.json", result)


def _runner(name: str, module: object):
    def run(args: argparse.Namespace) -> int:
        _emit(name, module.run(args), args.out)
        return 0

    return run


def _run_all(args: argparse.Namespace) -> int:
    failed = []
    for name, module in _available().items():
        parser = argparse.ArgumentParser()
        parser.add_argument("--out", default=None)
        module.add_arguments(parser)
        sub_args = parser.parse_args(["--quick"] if args.quick and _has_quick(module) else [])
        sub_args.out = args.out
        print(f"[medcl] bench {name}", file=sys.stderr, flush=True)
        try:
            _emit(name, module.run(sub_args), args.out)
        except Exception as exc:  # one failing benchmark must not hide the others
            failed.append(name)
            print(f"medcl: bench {name} failed: {exc}", file=sys.stderr)
    return 1 if failed else 0


def _has_quick(module: object) -> bool:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return any("--quick" in action.option_strings for action in parser._actions)


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "bench", "benchmarks printing throughput and peak memory as JSON")
    for name, module in _available().items():
        parser = add_command(sub, name, BENCHES[name], _runner(name, module))
        parser.add_argument("--out", help=f"also write OUT/{_module(name)}.json")
        module.add_arguments(parser)
    every = add_command(sub, "all", "run every benchmark", _run_all)
    every.add_argument("--out", help="write OUT/<name>.json for each")
    every.add_argument("--quick", action="store_true", help="small sizes where a benchmark supports it")
