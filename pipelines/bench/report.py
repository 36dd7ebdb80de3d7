"""``medcl bench report``: seconds per ECG report and reports per minute for a batch.

The batch is synthetic (``medcl.data.synthetic.ecg`` signals with a predictions dict in the
``ecg predict`` schema, 3 prototypes per finding) so the benchmark needs no checkpoint. Two phases
are timed: attribution (captum Integrated Gradients for every (record, finding) pair in one batched
call, on the trained checkpoint's net with ``--checkpoint``, else a small stand-in conv net) and
rendering (all figures + HTML + JSON through :func:`medcl.explain.report.write_report_batch`).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench report``."""
    parser.add_argument("--n", type=int, default=100, help="reports in the batch (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--ig-steps", type=int, default=16, help="Integrated Gradients steps")
    parser.add_argument("--workdir", default=None, help="where the reports go (default: a temp folder)")
    parser.add_argument("--checkpoint", default=None, help="attribute with this ProtoECGNet (default: a stand-in net)")
    parser.add_argument("--full-model", action="store_true",
                        help="attribute with an untrained full-size ProtoECGNet (configs/ecg/protoecgnet.yaml); "
                             "timing does not depend on the weights")
    parser.add_argument("--quick", action="store_true", help="10 reports instead of --n")


def _branch_of() -> dict[str, str]:
    """SCP code -> report branch, from the packaged statement table's prototype category."""
    import csv
    from importlib import resources

    text = resources.files("medcl.resources").joinpath("ptbxl_scp_statements.csv").read_text()
    names = {"1": "rhythm", "3": "morphology", "4": "global"}
    return {row["code"]: names.get(row["prototype_category"], "morphology") for row in csv.DictReader(text.splitlines())}


def _descriptions() -> dict[str, str]:
    import csv
    from importlib import resources

    text = resources.files("medcl.resources").joinpath("ptbxl_scp_statements.csv").read_text()
    return {row["code"]: row["description"] for row in csv.DictReader(text.splitlines())}


def _prototype(rng: Any, code: str, branch: str, donor: int, batch: Any, fs: float, rank: int) -> dict:
    """One synthetic prototype entry: a window around an R peak of record ``donor`` (or the whole strip)."""
    if branch == "morphology":
        r = float(rng.choice(batch.r_peaks_s[donor][1:-1] if len(batch.r_peaks_s[donor]) > 2 else batch.r_peaks_s[donor]))
        start_s, end_s = max(r - 0.1, 0.0), min(r + 0.5, 10.0)
    else:
        start_s, end_s = 0.0, 10.0
    sim = float(rng.uniform(0.6, 0.95))
    weight = float(rng.uniform(0.5, 1.5)) / (rank + 1)
    return {
        "branch": branch, "index": int(rng.integers(0, 500)), "class": code,
        "contribution": sim * weight, "similarity": sim, "weight": weight,
        "source_record": f"synthetic/{donor:05d}", "source_labels": list(batch.labels[donor]),
        "window": {"start": int(start_s * fs), "end": int(round(end_s * fs)), "start_s": start_s, "end_s": end_s},
    }


def synthetic_batch(n: int, seed: int = 0, model_fs: float = 100.0, display_fs: float = 250.0) -> dict:
    """A predictions dict plus signals for ``n`` synthetic ECGs (findings = their true labels).

    Returns:
        ``{"predictions", "ecgs" (record -> ECGInput), "model_signals" ((n, 12, 1000) float32),
        "sources" (source_record -> (signal, fs)), "batch" (the SyntheticECGs)}``.
    """
    import numpy as np

    from medcl.data.synthetic.ecg import FS, generate
    from medcl.explain.report import ECGInput
    from medcl.io.ecg import resample

    batch = generate(n, seed)
    rng = np.random.default_rng(seed)
    display = resample(batch.signals, FS, display_fs).astype(np.float32)
    model = resample(batch.signals, FS, model_fs).astype(np.float32)
    branch_of, desc = _branch_of(), _descriptions()
    labels = list(branch_of)
    records, ecgs, sources = [], {}, {}
    for i, codes in enumerate(batch.labels):
        key = f"synthetic/{i:05d}"
        findings = []
        for code in codes:
            donors = [j for j, other in enumerate(batch.labels) if code in other and j != i] or [i]
            picks = rng.choice(donors, size=3)
            findings.append({
                "code": code, "description": desc.get(code, code), "probability": float(rng.uniform(0.55, 0.99)),
                "threshold": 0.5, "branch": branch_of[code],
                "prototypes": [_prototype(rng, code, branch_of[code], int(d), batch, model_fs, k)
                               for k, d in enumerate(picks)],
            })
        meta = {"age": int(batch.age[i]), "sex": "MF"[int(batch.sex[i])], "fs": model_fs, "duration_s": 10.0}
        records.append({"record": key, "record_id": f"{i:05d}", "meta": meta,
                        "probabilities": {f["code"]: f["probability"] for f in findings}, "findings": findings})
        ecgs[key] = ECGInput(key, display[i], display_fs, [f"Age: {meta['age']}", f"Sex: {meta['sex']}"])
        sources[key] = (display[i], display_fs)
    predictions = {"labels": labels, "thresholds": dict.fromkeys(labels, 0.5), "records": records}
    return {"predictions": predictions, "ecgs": ecgs, "model_signals": model, "sources": sources, "batch": batch}


def standin_net(labels: int = 71) -> Any:
    """A small 1D conv net ``(B, 12, T) -> (B, labels)`` used to time attributions without a checkpoint."""
    from torch import nn

    return nn.Sequential(
        nn.Conv1d(12, 32, 15, padding=7), nn.ReLU(), nn.Conv1d(32, 32, 15, padding=7, stride=2), nn.ReLU(),
        nn.Conv1d(32, labels, 1), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
    ).eval()


def full_size_forward(labels: list[str]) -> Any:
    """The fused-probability forward of an untrained full-size ProtoECGNet (``configs/ecg/protoecgnet.yaml``)."""
    from pathlib import Path

    import torch

    from medcl.config import load_config
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, head_probabilities, label_groups

    config = Path(__file__).resolve().parents[2] / "configs" / "ecg" / "protoecgnet.yaml"
    cfg = load_config(ECGConfig, config if config.is_file() else None, [])
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels)).eval()

    def forward(x: Any) -> Any:
        return head_probabilities(net, net(x), "fusion")

    return forward


def _attribution_net(checkpoint: str | None, labels: list[str], full: bool = False) -> tuple[Any, list[str], Any, str]:
    """``(forward, labels, device, description)``: the checkpoint's network, a full-size untrained
    ProtoECGNet, or the stand-in net."""
    import torch

    if full and checkpoint is None:
        return full_size_forward(labels), labels, torch.device("cpu"), "full-size ProtoECGNet (untrained)"
    if checkpoint is None:
        return standin_net(len(labels)), labels, torch.device("cpu"), "stand-in 1D conv (no checkpoint)"
    from medcl.pipelines.ecg_report import load_report_model

    model = load_report_model(checkpoint)
    return model.forward, model.labels, model.device, f"ProtoECGNet {checkpoint}"


def run(args: argparse.Namespace) -> dict:
    """Time attribution and rendering for a batch; returns seconds per report and reports/min."""
    import tempfile
    import time
    from pathlib import Path

    import torch

    from medcl.explain.ecg_attribution import integrated_gradients
    from medcl.explain.report import ReportRenderer, write_report_batch

    torch.set_num_threads(args.threads)
    n = 10 if args.quick else args.n
    data = synthetic_batch(n, seed=0)
    preds = data["predictions"]
    forward, labels, device, net_name = _attribution_net(args.checkpoint, preds["labels"],
                                                         getattr(args, "full_model", False))
    index = {c: k for k, c in enumerate(labels)}
    pairs = [(i, r["record"], f["code"]) for i, r in enumerate(preds["records"]) for f in r["findings"]]
    t0 = time.perf_counter()
    signals = torch.from_numpy(data["model_signals"]).to(device)
    attr = integrated_gradients(forward, signals, [p[0] for p in pairs], [index[p[2]] for p in pairs],
                                n_steps=args.ig_steps, internal_batch_size=64)
    t_attr = time.perf_counter() - t0
    attributions = {(rec, code): a for (_, rec, code), a in zip(pairs, attr)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        renderer = ReportRenderer()
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_report_batch(preds, data["ecgs"], out, attributions=attributions,
                           sources=data["sources"].get, renderer=renderer)
        t_render = time.perf_counter() - t0
        html_mb = sum(p.stat().st_size for p in out.glob("*.html")) / 1e6
    per_report = (t_attr + t_render) / n
    return {
        "device": "cpu", "threads": args.threads, "n_reports": n, "findings": len(pairs),
        "figures": n + len(pairs) * 4, "ig_steps": args.ig_steps,
        "attribution_s": round(t_attr, 3), "renderer_init_s": round(t_init, 3), "render_s": round(t_render, 3),
        "render_s_per_report": round(t_render / n, 4), "s_per_report": round(per_report, 4),
        "reports_per_min": round(60.0 / per_report, 1), "html_mb_per_report": round(html_mb / n, 3),
        "attribution_net": net_name,
    }
