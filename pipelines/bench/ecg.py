"""ProtoECGNet benchmark: training samples/s per branch, projection vs forward time, predict records/s.

Full-size branches (ResNet-18, 512-d prototypes, 5 / 18 / 7 prototypes per class over the 16 / 52
/ 3 labels) with random weights, batch 32, ``--threads`` CPU threads (default 2):

- ``train_samples_per_s``: joint-stage optimiser steps (forward, :class:`PrototypeLoss`, backward,
  Adam) per branch on random 12 x 1000 inputs;
- ``projection``: the morphology branch's projection (936 prototypes) over ``--records`` random
  training records, against a plain forward pass over the same records (ratio = projection /
  forward);
- ``predict``: ``medcl ecg predict`` end to end on synthetic WFDB records (reading, batching,
  findings) with a full-size random checkpoint; records/s with and without the model load;
- ``peak_rss_mb``: peak resident memory of the process.

Reference (2 threads, batch 32): training ~81 / 34 / 53 samples/s (rhythm / morphology / global),
projection ~19 s per 1,000 records, fused forward ~80 records/s. The module top level imports
nothing heavy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb

REFERENCE = {"train_samples_per_s": {"rhythm": 81, "morphology": 34, "global": 53},
             "projection_s_per_1000": 19.0, "forward_records_per_s": 80.0}
TARGETS = {"train_speedup": 2.0, "projection_over_forward": 1.5, "predict_records_per_s": 80.0}
GROUP_SIZES = {"rhythm": 16, "morphology": 52, "global": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench ecg``."""
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per branch (default 5)")
    parser.add_argument("--records", type=int, default=2000, help="records for projection vs forward (default 2000)")
    parser.add_argument("--predict-records", type=int, default=128, help="synthetic records to predict (default 128)")
    parser.add_argument("--quick", action="store_true", help="small sizes (2 steps, 200 + 32 records)")
    parser.add_argument("--skip-onnx", action="store_true", help="skip the onnxruntime vs eager comparison")


def _branch(name: str):
    from medcl.nets.protoecg import build_branch
    from medcl.pipelines.ecg_config import ECGConfig

    per_class = ECGConfig().model.per_class[name]
    return build_branch(name, GROUP_SIZES[name], per_class)


def _timed(fn, *args) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of ``fn(*args)``."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def _train_rate(name: str, batch: int, steps: int) -> dict[str, float]:
    import torch

    from medcl.losses.prototype import PrototypeLoss, jaccard_matrix, positive_weights

    branch = _branch(name).train()
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(512, GROUP_SIZES[name], generator=g) < 0.15).float()
    loss_fn = PrototypeLoss(pos_weight=positive_weights(y) if y.sum(0).all() else None, cooccurrence=jaccard_matrix(y))
    params = [p for n, p in branch.named_parameters() if "classifier" not in n]
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.randn(batch, 12, 1000, generator=g)
    yb = y[:batch]
    layer = branch.prototypes

    def step() -> None:
        out = branch(x)
        loss = loss_fn(out["logits"], yb, out["similarities"], layer.prototypes, layer.identity)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocator, oneDNN primitives)
    wall, cpu = _timed(lambda: [step() for _ in range(steps)])
    return {"samples_per_s": batch * steps / wall, "samples_per_cpu_s": batch * steps / cpu}


def _projection_vs_forward(n_records: int, batch: int = 64) -> dict[str, float]:
    import torch

    from medcl.nets.prototype_projection import Projector

    branch = _branch("morphology").eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_records, 12, 1000, generator=g)
    y = (torch.rand(n_records, 52, generator=g) < 0.1).float()
    starts = range(0, n_records, batch)

    def forward() -> None:
        for s in starts:
            branch(x[s : s + batch])

    def project() -> None:
        proj = Projector(branch.prototypes)
        for s in starts:
            idx = torch.arange(s, min(s + batch, n_records))
            proj.update(branch.features(x[idx]), y[idx], idx)
        proj.result()

    with torch.inference_mode():
        branch(x[:batch])  # warm-up
        fwd_wall, fwd_cpu = _timed(forward)
        proj_wall, proj_cpu = _timed(project)
    return {"records": n_records, "prototypes": branch.prototypes.num_prototypes,
            "forward_s": fwd_wall, "projection_s": proj_wall, "projection_s_per_1000": 1000 * proj_wall / n_records,
            "projection_over_forward": proj_wall / fwd_wall, "forward_cpu_s": fwd_cpu, "projection_cpu_s": proj_cpu,
            "projection_over_forward_cpu": proj_cpu / fwd_cpu}


def _predict_rate(n_records: int, workdir: Path) -> dict[str, float]:
    import torch

    from medcl.data.ptbxl import PTBXL
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups, load_model, save_model
    from medcl.pipelines.ecg_predict import predict

    write_dataset(workdir / "synth", n_records, seed=0)
    records = [str(p) for p in PTBXL(workdir / "synth", fs=100).record_paths]
    labels = PTBXL(workdir / "synth", fs=100).labels
    cfg = ECGConfig()
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels))
    ckpt = save_model(workdir / "model.ckpt", net, cfg, labels, {"head": "fusion", "thresholds": [0.5] * len(labels)})
    predict(records[:4], ckpt)  # warm-up
    load_wall, _ = _timed(load_model, ckpt)
    wall, cpu = _timed(lambda: predict(records, ckpt, batch_size=32))
    n = len(records)
    return {"records": n, "seconds": wall, "records_per_s": n / wall, "model_load_s": load_wall,
            "records_per_s_without_load": n / max(wall - load_wall, 1e-9), "records_per_cpu_s": n / cpu}


def _onnx_vs_eager(args: argparse.Namespace, repeats: int) -> dict[str, Any]:
    """Full-size random ProtoECGNet (fusion head): onnxruntime vs eager on a batch of 32 records."""
    if args.skip_onnx:
        return {"skipped": True}
    import torch

    from medcl.data.ptbxl import packaged_statements
    from medcl.export.onnx import ECGOutputsModel
    from medcl.pipelines.bench.engines import onnx_vs_eager
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups

    cfg = ECGConfig()
    labels = sorted(packaged_statements()["code"])
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels))
    x = torch.randn(32, 12, cfg.data.length)
    return onnx_vs_eager(ECGOutputsModel(net, "fusion"), x, "ecg", "ecg", ["probabilities", "similarities"],
                         {"ecg": {0: "batch"}}, args.threads, repeats)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result."""
    import torch

    torch.set_num_threads(args.threads)
    steps = 2 if args.quick else args.steps
    n_proj = 200 if args.quick else args.records
    n_pred = 32 if args.quick else args.predict_records
    train = {b: _train_rate(b, args.batch_size, steps) for b in ("rhythm", "morphology", "global")}
    projection = _projection_vs_forward(n_proj)
    with tempfile.TemporaryDirectory() as tmp:
        pred = _predict_rate(n_pred, Path(tmp))
    speedup = {b: train[b]["samples_per_s"] / REFERENCE["train_samples_per_s"][b] for b in train}
    return {
        "device": "cpu",
        "note": "wall rates depend on machine load; *_per_cpu_s rates count CPU seconds of all threads",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "train_samples_per_s": train,
        "train_speedup_vs_reference": speedup,
        "projection": projection,
        "predict": pred,
        "onnxruntime_vs_eager": _onnx_vs_eager(args, 2 if args.quick else 5),
        "peak_rss_mb": peak_rss_mb(),
        "reference": REFERENCE,
        "targets": TARGETS,
        "targets_met": {
            "train_2x": all(v >= TARGETS["train_speedup"] for v in speedup.values()),
            "projection_within_1.5x_forward": projection["projection_over_forward"] <= TARGETS["projection_over_forward"],
            "predict_80_per_s": pred["records_per_s"] >= TARGETS["predict_records_per_s"],
        },
    }
