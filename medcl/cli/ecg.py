"""``medcl ecg``: train ProtoECGNet stages, evaluate on PTB-XL, predict ECG records (lazy imports)."""

from __future__ import annotations

import argparse
import json
import sys

from medcl.cli._helpers import add_command, add_device, add_group, add_overrides
from medcl.cli.ecg_report import register_report
from medcl.utils import non_negative_int, positive_float, positive_int


def _train(args: argparse.Namespace) -> int:
    from medcl.config import load_config
    from medcl.errors import MedclError
    from medcl.pipelines.ecg import ECGConfig, train
    from medcl.utils import check_writable_dir

    cfg = load_config(ECGConfig, args.config, args.overrides)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if not stages:
        raise MedclError("--stages: empty; e.g. joint,project,fusion")
    if args.resume is not None:
        from medcl.io.checkpoint_file import safe_torch_load

        safe_torch_load(args.resume, "checkpoint to resume from")  # refused before any training starts
    check_writable_dir(args.out)
    path = train(cfg, args.out, stages=stages, resume=args.resume)
    print(f"medcl: ProtoECGNet ({','.join(stages)}) written to {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from medcl.pipelines.ecg import evaluate

    res = evaluate(args.checkpoint, args.data, args.out, n_boot=args.bootstrap, seed=args.seed,
                   estimator=args.estimator, min_positives=args.min_positives)
    fused = res["fused"]
    print(f"estimator {res['estimator']}, classes with >= {res['min_positives']} positives")
    print(f"fused ({res['head']}): macro AUROC {_fmt(fused['macro'])}; {fused['n_classes_used']} classes "
          f"({len(fused['excluded'])} excluded)")
    print(f"branches, from {res['branch_source']}:")
    for b, r in res["branches"].items():
        print(f"  {b}: macro AUROC {_fmt(r['macro'])}")
    print(f"medcl: results in {args.out}/results.json and per_class.csv")
    return 0


def _fmt(macro: dict) -> str:
    value = macro.get("value")
    text = "n/a" if value is None else f"{value:.4f}"
    ci = macro.get("ci")
    if ci and None not in ci:
        text += f" ({int(round(100 * macro.get('level', 0.95)))}% CI {ci[0]:.4f}-{ci[1]:.4f})"
    if "n_batches" in macro:
        text += f" (mean over {macro['n_batches'] - macro['n_batches_skipped']} batches of {macro['batch_size']})"
    return text


def _predict(args: argparse.Namespace) -> int:
    from medcl.pipelines.ecg import predict

    res = predict(args.records, args.checkpoint, out_dir=args.out, batch_size=args.batch_size, engine=args.engine,
                  device=args.device, **array_options(args))
    if args.out is None:
        from medcl.utils import shown_path

        shown = [{**r, "record": shown_path(r["record"])} for r in res["records"]]
        print(json.dumps({**{k: v for k, v in res.items() if k != "errors"}, "records": shown}, indent=1))
    for err in res["errors"]:
        print(f"medcl: error: skipped {err['record']}: {err['error']}", file=sys.stderr)
    for rec in res["records"]:
        if rec["meta"].get("flat_leads"):
            print(f"medcl: warning: {rec['record']}: leads {', '.join(rec['meta']['flat_leads'])} are flat (constant, "
                  "an electrode off?); the prediction rests on the other leads", file=sys.stderr)
    where = f" into {args.out}" if args.out else ""
    print(f"medcl: predicted {len(res['records'])} of {len(res['records']) + len(res['errors'])} records{where}")
    return 1 if res["errors"] else 0


def array_options(args: argparse.Namespace) -> dict:
    """``--fs``/``--leads`` as the ``source_fs``/``source_leads`` keywords of the readers."""
    leads = [x.strip() for x in args.leads.split(",") if x.strip()] if args.leads else None
    return {"source_fs": args.fs, "source_leads": leads}


def add_array_options(p: argparse.ArgumentParser) -> None:
    """Add ``--fs`` and ``--leads`` (needed for .npy/.csv inputs only)."""
    p.add_argument("--fs", type=positive_float, help="sampling rate in Hz of .npy/.csv inputs (other formats store it)")
    p.add_argument("--leads", help="comma-separated lead names of .npy/.csv inputs, e.g. I,II,V1,V2,V3,V4,V5,V6 "
                                   "(a CSV header row may name them instead)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", "train ProtoECGNet stages (joint -> project -> fusion|classifier)", _train)
    p.add_argument("--config", help="YAML config (configs/ecg/*.yaml); defaults when omitted")
    p.add_argument("--out", required=True, help="run folder (<out>/model.ckpt; stages in <out>/checkpoints/<stage>/)")
    p.add_argument("--stages", default="joint,project,fusion",
                   help="comma-separated chain of joint, project, classifier, fusion (default joint,project,fusion)")
    p.add_argument("--resume", help="Lightning checkpoint to resume the first stage from, or a model "
                                    "checkpoint to start a chain that does not begin with joint")
    add_overrides(p)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", "AUROC (bootstrap CIs) and F1 on the PTB-XL test fold, fused and per branch",
                    _evaluate)
    p.add_argument("--checkpoint", required=True, help="model.ckpt from `medcl ecg train`")
    p.add_argument("--data", required=True, help="PTB-XL(-shaped) folder (folds 9 = validation, 10 = test)")
    p.add_argument("--out", required=True, help="folder for results.json and per_class.csv")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000, help="bootstrap replicates (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--estimator", default="full-fold", choices=["full-fold", "reference-batchwise", "ptbxl-benchmark"],
                   help="full-fold (default: whole test fold, bootstrap 95%% CI); reference-batchwise (the "
                        "ProtoECGNet reference's logged test_auc: mean of per-batch macro AUROC, batches of 32); "
                        "ptbxl-benchmark (rejection-sampled bootstrap, 90%% CI)")
    p.add_argument("--min-positives", type=non_negative_int, default=1,
                   help="score only classes with at least this many positives in the test fold (default 1)")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "predict", "71 SCP-statement probabilities, findings and their prototypes per record",
                    _predict)
    p.add_argument("records", nargs="+", metavar="RECORD_OR_FOLDER",
                   help="ECG files (WFDB .hea/.dat/.mat, DICOM waveform, .h5, HL7/GE MUSE/Philips .xml, .npy/.csv) "
                        "or folders")
    p.add_argument("--checkpoint", required=True,
                   help="model.ckpt from `medcl ecg train`, a weights-only model.safetensors, or with "
                        "--engine onnxruntime a `medcl export --format onnx` folder")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="run the model in PyTorch (default) or onnxruntime (ONNX export folder)")
    p.add_argument("--out", help="folder for predictions.csv, predictions.json, errors.csv (else JSON on stdout)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="records per model pass (default 32)")
    add_device(p)
    add_array_options(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "ecg", "ProtoECGNet: train, evaluate, predict, report")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    register_report(sub)
