"""ProtoECGNet benchmark, side by side with the official code's training step.

Full-size branches (ResNet-18, 512-d prototypes, 5 / 18 / 7 prototypes per class over the 16 / 52
/ 3 labels = 80 / 936 / 21 prototypes), batch 32 of 12 x 1000 inputs, ``--threads`` CPU threads
(default 2). Every ratio is measured in this process, both sides interleaved over ``--repeats``
rounds (median, min and max printed):

- ``train``: one joint-stage optimiser step per branch, medcl's (:func:`medcl_step`) against the
  reference step of :mod:`medcl.pipelines.bench.ecg_reference` (the authors' plain PyTorch step,
  no medcl code) on the **same weights and batch**; both steps' loss on that batch is printed and
  must agree (``loss_abs_diff``). FLOPs per step (``FlopCounterMode``) and the measured conv peak
  of this machine (:func:`conv_peak`) give each branch's share of the peak;
- ``forward``: the bare fused forward of the whole model (three branches + fusion), batch 32,
  inference mode, medcl against the three reference networks plus the same fusion layer;
- ``projection``: the morphology branch's projection (936 prototypes) over ``--records`` random
  training records against a plain forward pass over the same records (ratio = projection /
  forward);
- ``predict``: ``medcl ecg predict`` end to end on synthetic WFDB records (reading, resampling,
  filtering, batching, findings) with a full-size random checkpoint;
- ``peak_rss_mb``: peak resident memory of the process.

``CONTEXT`` keeps the figures measured once in one sitting with the official code (issue 20): for
context only, never divided by. The module top level imports nothing heavy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from medcl.engine.profiling import peak_rss_mb
from medcl.pipelines.bench.timing import interleaved, rate_summary, ratio, summary

CONTEXT = {"note": "official code vs medcl before issue 20, one quiet 2-core sitting; context only",
           "train_samples_per_s": {"rhythm": [84, 92], "morphology": [41, 41], "global": [56, 57]},
           "forward_records_per_s": [74, 74], "conv_peak_gflop_s": [157, 167]}
TARGETS = {"rhythm_speedup": 1.5, "share_of_conv_peak_2d": 0.9, "projection_over_forward": 1.5,
           "predict_records_per_s": 80.0}
GROUP_SIZES = {"rhythm": 16, "morphology": 52, "global": 3}
BRANCH_NAMES = ("rhythm", "morphology", "global")
PARTS = ("peak", "train", "forward", "projection", "predict", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medcl bench ecg``."""
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per comparison (default 5)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per side and round (default 2)")
    parser.add_argument("--branches", default=",".join(BRANCH_NAMES), help="branches to train (default all three)")
    parser.add_argument("--records", type=int, default=2000, help="records for projection vs forward (default 2000)")
    parser.add_argument("--predict-records", type=int, default=1000, help="synthetic records to predict (default 1000)")
    parser.add_argument("--compile", action="store_true",
                        help="medcl step under torch.compile (CPU inductor; minutes to compile, about 4%% faster)")
    parser.add_argument("--quick", action="store_true", help="small sizes (3 rounds of 1 step, 200 + 64 records)")
    parser.add_argument("--skip-onnx", action="store_true", help="skip the onnxruntime vs eager comparison")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"what to measure, some of {','.join(PARTS)} (default all)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="training steps timed in CPU seconds of this process instead of wall seconds "
                             "(steadier on a busy machine, best with --threads 1)")
    parser.add_argument("--no-before", action="store_true",
                        help="leave out the medcl_before side of the training steps (the plain paths)")


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


# ------------------------------------------------------------------------ the two training steps


def copy_to_reference(branch, ref) -> None:
    """Load a medcl branch's weights into a :class:`ReferenceProtoNet` (same layer names as
    torchvision). MONAI's shortcut convolutions carry a bias the reference lacks; it is zeroed in
    ``branch`` first (a bias before a BatchNorm has no effect in training mode anyway)."""
    import torch

    with torch.no_grad():
        for name, p in branch.named_parameters():
            if ".downsample.0.bias" in name:
                p.zero_()
    mapped = {}
    for key, value in branch.state_dict().items():
        if key.startswith("backbone.") and not key.endswith(".downsample.0.bias"):
            mapped["feature_extractor." + key.removeprefix("backbone.").removeprefix("net.")] = value
        elif key.startswith("add_on."):
            mapped["add_on_layers." + key.removeprefix("add_on.")] = value
        elif key == "prototypes.prototypes":
            mapped["prototype_vectors"] = value
        elif key == "prototypes.classifier.weight":
            mapped["classifier.weight"] = value
    missing, unexpected = ref.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if k not in ("ones", "prototype_class_identity")]
    if missing or unexpected:
        raise ValueError(f"reference does not fit the branch: missing {missing[:3]}, unexpected {unexpected[:3]}")


def reference_for(name: str, branch, train_labels):
    """The reference network of branch ``name`` holding ``branch``'s weights."""
    from medcl.pipelines.bench import ecg_reference

    length = 1 if name == "rhythm" else branch.prototypes.length
    ref = ecg_reference.ReferenceProtoNet(1 if name == "rhythm" else 2, branch.prototypes.num_classes,
                                          branch.prototypes.per_class, ecg_reference.jaccard_cooccurrence(train_labels),
                                          proto_time_len=length)
    ref = ref.to(next(branch.parameters()).dtype)
    copy_to_reference(branch, ref)
    return ref


def medcl_step(branch, loss_fn, x, y, lr: float = 1e-4, compile: bool = False):
    """medcl's joint-stage step of one branch (:class:`medcl.nets.protoecg.BranchTrainer`); returns
    a callable running one step and returning the loss."""
    from medcl.nets.protoecg import BranchTrainer

    trainer = BranchTrainer(branch, loss_fn, lr=lr, compile=compile)
    return lambda: trainer.step(x, y)


def reference_step(name: str, ref, x, y, train_labels, lr: float = 1e-4):
    """The reference's step on the same batch (2D branches get the ``(B, 1, 12, N)`` input)."""
    from medcl.pipelines.bench import ecg_reference

    xr = x if name == "rhythm" else x.unsqueeze(1)
    return ecg_reference.make_step(ref, xr, y, ecg_reference.class_weights(train_labels).to(x.dtype), lr=lr)


def branch_pair(name: str, batch: int, seed: int = 0):
    """(branch, reference, loss, x, y, train_labels): both networks with the same weights."""
    import torch

    from medcl.losses.prototype import PrototypeLoss, jaccard_matrix, positive_weights

    torch.manual_seed(seed)
    branch = _branch(name).train()
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(512, GROUP_SIZES[name], generator=g) < 0.15).float()
    labels[: GROUP_SIZES[name]].fill_diagonal_(1.0)  # every class has positives
    ref = reference_for(name, branch, labels).train()
    loss_fn = PrototypeLoss(pos_weight=positive_weights(labels), cooccurrence=jaccard_matrix(labels))
    x = torch.randn(batch, 12, 1000, generator=g)
    return branch, ref, loss_fn, x, labels[:batch], labels


def step_gflop(fn) -> float:
    """GFLOP of one call of ``fn`` counted by ``torch.utils.flop_counter.FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def conv_peak(threads: int, repeats: int) -> dict[str, Any]:
    """This machine's conv throughput, for context: forward + backward GFLOP/s of the 2D branches'
    3x3 convolutions at batch 32 (counted FLOPs; oneDNN may use Winograd, so it can exceed the
    GEMM rate), and an fp32 GEMM. The per-branch target uses :func:`conv_seconds` instead."""
    import torch

    torch.set_num_threads(threads)
    shapes = {"64ch_250": (64, 250), "128ch_125": (128, 125), "256ch_63": (256, 63), "512ch_32": (512, 32)}
    results: dict[str, Any] = {}
    for key, (ch, t) in shapes.items():
        conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False)
        x = torch.randn(32, ch, 1, t, requires_grad=True)

        def run(conv=conv, x=x) -> None:
            conv(x).sum().backward()

        flops = step_gflop(run)
        secs = interleaved({key: run}, repeats, calls=3)[key]
        results[key] = summary([flops / s for s in secs], 1)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    secs = interleaved({"gemm": lambda: a @ b}, repeats, calls=3)["gemm"]
    best = max(results, key=lambda k: results[k]["median"])
    return {"conv_gflop_s": results[best], "best_shape": best, "per_shape": results,
            "gemm_gflop_s": summary([2 * 2048**3 / 1e9 / s for s in secs], 1)}


def conv_seconds(branch, x, repeats: int, clock=time.perf_counter) -> float:
    """Seconds per step the branch's own convolutions take in isolation: each one's forward and
    backward (input and weight gradients; no input gradient for the first) at the shape and layout
    it sees in the step, median of ``repeats``. ``conv_seconds / step seconds`` is the step's
    share of its conv peak: 1.0 would mean everything besides the convolutions were free."""
    import copy
    import statistics

    import torch
    from torch import nn

    seen: list[tuple[nn.Module, torch.Size, bool]] = []

    def hook(mod, inputs, _out) -> None:
        seen.append((mod, inputs[0].shape, inputs[0].is_contiguous(memory_format=torch.channels_last)
                     and inputs[0].ndim == 4 and not inputs[0].is_contiguous()))

    convs = [m for m in branch.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            branch(x)
    finally:
        for h in handles:
            h.remove()
    total = 0.0
    for k, (mod, shape, channels_last) in enumerate(seen):
        inp = torch.randn(shape)
        if channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        inp.requires_grad_(k > 0)
        own = copy.deepcopy(mod)  # its own forward (one-row / rows paths), weights in the step's layout

        def run(own=own, inp=inp) -> None:
            own(inp).sum().backward()
            own.zero_grad(set_to_none=True)

        run()
        times = []
        for _ in range(repeats):
            start = clock()
            run()
            times.append(clock() - start)
        total += statistics.median(times)
    return total


def train_side_by_side(name: str, batch: int, repeats: int, steps: int, compile: bool,
                       before: bool = True, cpu_time: bool = False) -> dict[str, Any]:
    """Interleaved medcl vs reference steps of one branch (same weights, same batch); with ``before``
    also medcl's step on the plain paths (:func:`medcl.nets.protoecg.plain_paths`: full-kernel 2D
    convolutions, contiguous rhythm weights, eager), the step before the issue-20 step work. The
    ``medcl`` side is the default network; 2D branches also get ``medcl_fast_paths``, the same step
    with the opt-in one-row convolutions (:func:`medcl.nets.protoecg.fast_paths`), and the ratio
    ``fast_paths_over_default``. ``cpu_time``: rates per CPU second of the process instead of per
    wall second."""
    import copy

    import torch

    from medcl.nets.protoecg import fast_paths, plain_paths

    branch, ref, loss_fn, x, y, labels = branch_pair(name, batch)
    start_branch, start_ref = copy.deepcopy(branch.state_dict()), copy.deepcopy(ref.state_dict())
    with torch.no_grad():  # the equal-work check: one loss, two implementations
        out = branch(x)
        ours = loss_fn(out["logits"], y, out["similarities"], branch.prototypes.prototypes,
                       branch.prototypes.identity)["loss"]
        from medcl.pipelines.bench.ecg_reference import class_weights, prototype_loss

        logits, _, sims = ref(x if name == "rhythm" else x.unsqueeze(1))
        theirs = prototype_loss(logits, y, ref, sims, class_weights(labels))
    branch.load_state_dict(start_branch)
    ref.load_state_dict(start_ref)
    sides = {"reference": reference_step(name, ref, x, y, labels)}
    if before:
        sides["medcl_before"] = medcl_step(plain_paths(copy.deepcopy(branch)), copy.deepcopy(loss_fn), x, y)
    if branch.kind == "2d":
        sides["medcl_fast_paths"] = medcl_step(fast_paths(copy.deepcopy(branch)), copy.deepcopy(loss_fn), x, y,
                                               compile=compile)
    sides["medcl"] = medcl_step(branch, loss_fn, x, y, compile=compile)
    t0 = time.perf_counter()
    sides["medcl"]()  # first call: compilation (if any)
    warm_s = time.perf_counter() - t0
    gflop = {k: step_gflop(fn) for k, fn in sides.items()}
    clock = time.process_time if cpu_time else time.perf_counter
    secs = interleaved(sides, repeats, calls=steps, clock=clock)
    rates = {k: rate_summary(v, batch) for k, v in secs.items()}
    conv_s = conv_seconds(branch, x, repeats, clock)
    step_s = batch / float(rates["medcl"]["median"])
    result = {"prototypes": branch.prototypes.num_prototypes, "samples_per_s": rates,
              "speedup": ratio(rates["medcl"], rates["reference"]),
              "gflop_per_step": {k: round(v, 2) for k, v in gflop.items()},
              "medcl_gflop_s": round(gflop["medcl"] * float(rates["medcl"]["median"]) / batch, 1),
              "loss": {"reference": float(theirs), "medcl": float(ours), "loss_abs_diff": abs(float(theirs - ours))},
              "conv_seconds_per_step": round(conv_s, 4), "share_of_conv_peak": round(conv_s / step_s, 3),
              "medcl_first_step_s": round(warm_s, 2), "compiled": compile,
              "clock": "cpu" if cpu_time else "wall"}
    if before:
        result["speedup_over_before"] = ratio(rates["medcl"], rates["medcl_before"])
        result["before_over_reference"] = ratio(rates["medcl_before"], rates["reference"])
    if "medcl_fast_paths" in rates:
        result["fast_paths_over_default"] = ratio(rates["medcl_fast_paths"], rates["medcl"])
    return result


def forward_side_by_side(batch: int, repeats: int) -> dict[str, Any]:
    """Bare fused forward (three branches + fusion, inference mode): medcl vs the reference nets."""
    import torch

    from medcl.nets.protoecg import BRANCHES, ProtoECGNet

    torch.manual_seed(0)
    labels = {b: list(range(sum(list(GROUP_SIZES.values())[:i]), sum(list(GROUP_SIZES.values())[: i + 1])))
              for i, b in enumerate(BRANCHES)}
    from medcl.pipelines.ecg_config import ECGConfig

    net = ProtoECGNet(labels, 71, ECGConfig().model.per_class).eval()
    dummy = torch.zeros(4, 71)
    refs = {b: reference_for(b, net.branches[b], dummy[:, labels[b]] + 1).eval() for b in BRANCHES}
    fusion = net.fusion
    x = torch.randn(batch, 12, 1000)

    def reference() -> torch.Tensor:
        sims = [refs["rhythm"](x)[2]] + [refs[b](x.unsqueeze(1))[2] for b in ("morphology", "global")]
        return fusion(torch.cat(sims, dim=1))

    def medcl() -> torch.Tensor:
        return net(x)["fused"]

    with torch.inference_mode():
        diff = float((reference() - medcl()).abs().max())
        secs = interleaved({"reference": reference, "medcl": medcl}, repeats)
    rates = {k: rate_summary(v, batch) for k, v in secs.items()}
    return {"records_per_s": rates, "speedup": ratio(rates["medcl"], rates["reference"]), "max_abs_diff": diff}


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


def _predict_rate(n_records: int, workdir: Path, repeats: int = 3) -> dict[str, Any]:
    """``predict`` on ``n_records`` synthetic 500 Hz WFDB records (read, resampled to the model's
    rate, filtered, batched) with a full-size random checkpoint, ``repeats`` times."""
    import torch

    from medcl.data.ptbxl import PTBXL
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups, load_model, save_model
    from medcl.pipelines.ecg_predict import predict

    write_dataset(workdir / "synth", n_records, seed=0)
    data = PTBXL(workdir / "synth", fs=500)
    records, labels = [str(p) for p in data.record_paths], data.labels
    cfg = ECGConfig()
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels))
    ckpt = save_model(workdir / "model.ckpt", net, cfg, labels, {"head": "fusion", "thresholds": [0.5] * len(labels)})
    predict(records[:4], ckpt)  # warm-up
    load_wall, _ = _timed(load_model, ckpt)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = _timed(lambda: predict(records, ckpt))
        walls.append(wall)
        cpus.append(cpu)
    n = len(records)
    return {"records": n, "record_fs": 500, "model_fs": cfg.data.fs, "seconds": summary(walls),
            "records_per_s": summary([n / w for w in walls], 1), "model_load_s": round(load_wall, 3),
            "records_per_cpu_s": summary([n / c for c in cpus], 1)}


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


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The short table ``medcl bench all`` prints: one row per side-by-side figure."""
    rows = []
    for name, res in result.get("train", {}).items():
        r = res["samples_per_s"]
        rows.append({"figure": f"ecg train step, {name} ({res['prototypes']} prototypes)", "unit": "samples/s",
                     "reference": r["reference"], "medcl": r["medcl"], "ratio": res["speedup"]})
        if "medcl_before" in r:
            rows.append({"figure": f"ecg train step, {name}: medcl plain paths (as reference) vs now",
                         "unit": "samples/s", "reference": r["medcl_before"], "medcl": r["medcl"],
                         "ratio": res["speedup_over_before"]})
        if "medcl_fast_paths" in r:
            rows.append({"figure": f"ecg train step, {name}: medcl default vs opt-in fast_paths (one-row convs)",
                         "unit": "samples/s", "reference": r["medcl"], "medcl": r["medcl_fast_paths"],
                         "ratio": res["fast_paths_over_default"]})
    if "forward" in result:
        r = result["forward"]["records_per_s"]
        rows.append({"figure": "ecg bare fused forward, batch 32", "unit": "records/s", "reference": r["reference"],
                     "medcl": r["medcl"], "ratio": result["forward"]["speedup"]})
    if "predict" in result:
        rows.append({"figure": f"ecg predict end to end, {result['predict']['records']} WFDB records",
                     "unit": "records/s", "reference": None, "medcl": result["predict"]["records_per_s"],
                     "ratio": None})
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able result."""
    import torch

    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    steps = 1 if args.quick else args.steps
    n_proj = 200 if args.quick else args.records
    n_pred = 64 if args.quick else args.predict_records
    names = [b.strip() for b in args.branches.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BRANCH_NAMES))
    if unknown:
        from medcl.errors import MedclError

        raise MedclError(f"--branches: unknown branch {unknown[0]!r}; expected some of {', '.join(BRANCH_NAMES)}")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        from medcl.errors import MedclError

        raise MedclError(f"--parts: unknown part {sorted(parts - set(PARTS))[0]!r}; expected some of {', '.join(PARTS)}")
    result: dict[str, Any] = {
        "device": "cpu",
        "note": "both sides in this process, interleaved; median / min / max over the rounds; wall rates depend "
                "on machine load",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "repeats": repeats,
    }
    if "peak" in parts:
        result["conv_peak"] = conv_peak(args.threads, repeats)
    if "train" in parts:
        result["train"] = {b: train_side_by_side(b, args.batch_size, repeats, steps, args.compile,
                                                 before=not args.no_before, cpu_time=args.cpu_time)
                           for b in names}
    if "forward" in parts:
        result["forward"] = forward_side_by_side(args.batch_size, repeats)
    if "projection" in parts:
        result["projection"] = _projection_vs_forward(n_proj)
    if "predict" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            result["predict"] = _predict_rate(n_pred, Path(tmp), repeats)
    if "onnx" in parts:
        result["onnxruntime_vs_eager"] = _onnx_vs_eager(args, repeats)
    result.update({"peak_rss_mb": peak_rss_mb(), "context": CONTEXT, "targets": TARGETS})
    train, projection, pred = result.get("train", {}), result.get("projection"), result.get("predict")
    met = {}
    if projection is not None:
        met["projection_within_1.5x_forward"] = projection["projection_over_forward"] <= TARGETS["projection_over_forward"]
    if pred is not None:
        met["predict_80_per_s"] = float(pred["records_per_s"]["median"]) >= TARGETS["predict_records_per_s"]
    if "rhythm" in train:
        met["rhythm_1.5x_reference"] = train["rhythm"]["speedup"] >= TARGETS["rhythm_speedup"]
    for b in ("morphology", "global"):
        if b in train:
            met[f"{b}_90pct_conv_peak"] = train[b]["share_of_conv_peak"] >= TARGETS["share_of_conv_peak_2d"]
    result["targets_met"] = met
    result["table"] = table_rows(result)
    return result
