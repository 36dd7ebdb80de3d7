"""``medcl ecg predict``: ECG records of any supported format -> 71 probabilities, findings and their prototypes.

Records are read in parallel threads (:func:`medcl.io.ecg.read_ecg`: any rate, lead order, .dat or
.mat; resampled to the model's rate, high-passed, cropped/padded to its length), batched through
the model under ``torch.inference_mode``. For every finding (probability >= its validation
threshold), the prototypes that contributed most are listed with contribution = fusion weight x
similarity: the logit units of the fused output, one scale across the three branches. A model
without a trained fusion layer uses its branch classifiers instead. A record that fails is listed
in ``errors.csv`` and the batch goes on.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcl.engine.parallel import map_batches, read_batches
from medcl.errors import MedclError
from medcl.io.ecg import ECGRecord, find_records, read_ecg
from medcl.nets.protoecg import BRANCHES, ProtoECGNet, inference_copy
from medcl.pipelines.ecg_config import ECGConfig
from medcl.pipelines.ecg_model import ECGModel, load_model
from medcl.utils import atomic_write_path, progress_bar, write_json

__all__ = ["branch_of", "contribution_weights", "predict", "prototype_table"]

TOP_PROTOTYPES = 3
PROTOTYPES_JSON = "prototypes.json"
CONTRIBUTIONS_NPY = "contribution_weights.npy"


def _lookup(records: Mapping[str, ECGRecord], path: str) -> ECGRecord:
    return records[path]


def _read(path: str, fs: int, n_samples: int, highpass: float | None, source: dict) -> ECGRecord | str:
    try:
        return read_ecg(path, fs=fs, n_samples=n_samples, highpass=highpass, **source)
    except MedclError as exc:
        return str(exc)
    except Exception as exc:  # unreadable file: reported per record, the batch goes on
        return f"{path}: cannot read record ({type(exc).__name__}: {exc})"


def contribution_weights(net: ProtoECGNet, head: str) -> torch.Tensor:
    """``(L, P_total)`` weights; weight x similarity is a prototype's contribution to a label's logit.

    ``head="fusion"``: the fusion layer. ``"branches"``: each label's own branch classifier
    (zero for prototypes of other branches).
    """
    if head == "fusion":
        return net.fusion.weight.detach()
    total = sum(net.branches[b].prototypes.num_prototypes for b in BRANCHES)
    weight = net.fusion.weight.new_zeros(net.num_labels, total)
    for b, start in net.prototype_offsets().items():
        cls = net.branches[b].prototypes.classifier.weight.detach()  # (C_b, P_b)
        weight[net.label_index(b), start : start + cls.shape[1]] = cls
    return weight


def prototype_table(net: ProtoECGNet, labels: list[str], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Static description of every prototype in concatenated order (branch, class, source, window)."""
    table: list[dict[str, Any]] = []
    projection = extra.get("projection") or {}
    for b in BRANCHES:
        layer = net.branches[b].prototypes
        codes = [labels[i] for i in net.label_index(b).tolist()]
        classes = layer.identity.argmax(dim=1).tolist()
        prov = projection.get(b)
        for j, c in enumerate(classes):
            row = {"branch": b, "index": j, "class": codes[c], "source_record": None, "source_labels": [],
                   "window": None}
            if prov is not None and int(prov["sample"][j]) >= 0:
                row["source_record"] = prov["record"][j]
                row["source_labels"] = list(prov["labels"][j])
                row["window"] = {k: (float(prov[k][j]) if k.endswith("_s") else int(prov[k][j]))
                                 for k in ("start", "end", "start_s", "end_s")}
            table.append(row)
    return table


def branch_of(net: ProtoECGNet, num_labels: int) -> list[str]:
    owner = [""] * num_labels
    for b in BRANCHES:
        for i in net.label_index(b).tolist():
            owner[i] = b
    return owner


class _Predictor:
    """The loaded model and everything needed to turn batches into predictions.json entries.

    ``engine="torch"``: ``checkpoint`` is a ``.ckpt`` or weights-only file, or an already loaded
    :class:`~medcl.pipelines.ecg_model.ECGModel`. ``"onnxruntime"``: it is a ``medcl export
    --format onnx`` folder, whose card, ``prototypes.json`` and ``contribution_weights.npy`` replace
    what the network would give.
    """

    def __init__(self, checkpoint: str | os.PathLike | ECGModel, engine: str = "torch", device: str = "auto") -> None:
        from medcl.data.ptbxl_statements import packaged_statements

        if engine == "onnxruntime":
            self._init_onnx(checkpoint, device)
        elif engine == "torch":
            self._init_torch(checkpoint, device)
        else:
            raise MedclError(f"engine: {engine!r} is not one of ['torch', 'onnxruntime']")
        thr = self.extra.get("thresholds")
        self.thresholds = np.asarray(thr if thr is not None else [0.5] * len(self.labels), dtype=np.float64)
        desc = packaged_statements().set_index("code")["description"].to_dict()
        self.descriptions = [desc.get(c, c) for c in self.labels]
        self.n_samples = self.cfg.data.length

    def _init_torch(self, checkpoint: str | os.PathLike | ECGModel, device: str) -> None:
        from medcl.engine.device import pick_device
        from medcl.export.onnx import ECGOutputsModel

        where = pick_device(device)
        model = checkpoint if isinstance(checkpoint, ECGModel) else load_model(checkpoint)
        net, self.cfg, self.labels, self.extra = model
        self.head = model.head
        self.model = ECGOutputsModel(inference_copy(net).to(where), self.head).eval()
        self.device = where
        self.parallel = where.type == "cpu"
        self.table = prototype_table(net, self.labels, self.extra)
        self.owner = branch_of(net, len(self.labels))
        self.weight = contribution_weights(net, self.head).cpu()

    def _init_onnx(self, folder: str | os.PathLike, device: str) -> None:
        import json

        from medcl.export.onnx import OnnxModel

        onnx = OnnxModel(folder, "ecg", device=device)
        self.device = torch.device("cpu")  # onnxruntime takes and returns host arrays
        card = onnx.card
        self.cfg = ECGConfig.model_validate(card["config"])
        label_map = card["label_map"]
        self.labels = sorted(label_map, key=label_map.__getitem__)
        self.extra = card.get("extra") or {}
        self.head = card["head"]
        self.owner = list(card["label_branches"])
        self.table = json.loads((onnx.folder / PROTOTYPES_JSON).read_text())
        weight = np.load(onnx.folder / CONTRIBUTIONS_NPY, allow_pickle=False)
        self.weight = torch.from_numpy(np.asarray(weight, dtype=np.float32))

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs, sims = onnx(x)
            return torch.from_numpy(probs), torch.from_numpy(sims)

        self.model = run
        self.parallel = False  # onnxruntime has its own threads

    @torch.inference_mode()
    def run(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities ``(B, L)`` and the top prototypes ``(B, L, k)`` indices and contributions."""
        probs, sims = self.model(torch.from_numpy(signals).to(self.device))
        probs, sims = probs.cpu(), sims.cpu()
        contrib = self.weight[None] * sims[:, None, :]  # (B, L, P)
        top = contrib.topk(min(TOP_PROTOTYPES, contrib.shape[-1]), dim=-1)
        return probs.numpy(), top.indices.numpy(), sims.numpy()

    def entry(self, path: str, rec: ECGRecord, probs: np.ndarray, top: np.ndarray, sims: np.ndarray) -> dict:
        findings = []
        weight = self.weight.numpy()
        for i in np.flatnonzero(probs >= self.thresholds):
            protos = []
            for p in top[i]:
                w, s = float(weight[i, p]), float(sims[p])
                protos.append({**self.table[p], "contribution": w * s, "similarity": s, "weight": w})
            findings.append({"code": self.labels[i], "description": self.descriptions[i],
                             "probability": float(probs[i]), "threshold": float(self.thresholds[i]),
                             "branch": self.owner[i], "prototypes": protos})
        findings.sort(key=lambda f: -f["probability"])
        return {
            "record": path,
            "record_id": rec.record_id,
            "meta": {"age": rec.age, "sex": rec.sex, "fs": rec.source_fs,
                     "duration_s": rec.source_n_samples / rec.source_fs if rec.source_fs else rec.duration_s,
                     "flat_leads": list(rec.flat_leads)},
            "probabilities": {c: float(p) for c, p in zip(self.labels, probs)},
            "findings": findings,
        }


def predict(records: Sequence[str | os.PathLike] | Mapping[str, ECGRecord],
            checkpoint: str | os.PathLike | ECGModel, out_dir: str | os.PathLike | None = None,
            batch_size: int = 32, engine: str = "torch", device: str = "auto", source_fs: float | None = None,
            source_leads: list[str] | None = None) -> dict:
    """Predict every record; return the ``predictions.json`` dict (and write outputs to ``out_dir``).

    ``records`` may be any format :func:`medcl.io.ecg.read_ecg` reads (``source_fs``/``source_leads``
    describe ``.npy``/``.csv`` arrays), or records already read at the model's rate and length
    (``{name: ECGRecord}``, as ``medcl ecg report`` passes them). ``checkpoint`` may be an already
    loaded :class:`~medcl.pipelines.ecg_model.ECGModel`.

    Records are read ahead in a worker process while the model runs; on CPU, batches run in
    parallel threads with one intra-op thread each, through an inference copy of the network
    (BatchNorm folded into the convolutions, channels-last 2D branches: same outputs up to float
    rounding), which uses a few cores far better than splitting each batch's convolutions.

    ``engine="onnxruntime"`` runs a ``medcl export --format onnx`` folder given as ``checkpoint``.
    ``device``: ``"auto"`` (the GPU when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``;
    for onnxruntime it picks the execution providers (:func:`medcl.export.onnx.onnx_providers`).

    Raises:
        MedclError: bad checkpoint, a folder without records, no record given, or a ``device``
            that is not a device name or not available here.
    """
    read = dict(records) if isinstance(records, Mapping) else None
    paths = list(read) if read is not None else find_records(records)
    if not paths:
        raise MedclError("records: nothing to predict")
    pred = _Predictor(checkpoint, engine, device)
    d = pred.cfg.data

    if read is not None:
        reader = functools.partial(_lookup, read)
    else:
        reader = functools.partial(_read, fs=d.fs, n_samples=pred.n_samples, highpass=d.highpass,
                                   source={"source_fs": source_fs, "source_leads": source_leads})

    def infer(loaded: list[ECGRecord | str]) -> tuple[list[ECGRecord | str], Any]:
        good = [r.signal for r in loaded if not isinstance(r, str)]
        return loaded, (pred.run(np.stack(good)) if good else None)

    n_batches = (len(paths) + batch_size - 1) // batch_size
    # Reading (Python-heavy header parsing) in a worker process; on CPU, batches in parallel threads
    # with one intra-op thread each (see medcl.engine.parallel); outputs come back in order.
    batches = read_batches(paths, reader, batch_size, workers=0 if read is not None else 1)
    threads = torch.get_num_threads() if pred.parallel else 1
    entries: list[dict] = []
    errors: list[tuple[str, str]] = []
    start = 0
    for loaded, res in progress_bar(map_batches(infer, batches, threads), f"predict ({len(paths)} records)",
                                    total=n_batches):
        batch, start = paths[start : start + len(loaded)], start + len(loaded)
        errors += [(p, r) for p, r in zip(batch, loaded) if isinstance(r, str)]
        good = [(p, r) for p, r in zip(batch, loaded) if not isinstance(r, str)]
        if res is not None:
            probs, top, sims = res
            entries += [pred.entry(p, r, probs[k], top[k], sims[k]) for k, (p, r) in enumerate(good)]
    result = {"labels": pred.labels, "thresholds": dict(zip(pred.labels, pred.thresholds.tolist())),
              "records": entries}
    if out_dir is not None:
        _write_outputs(Path(out_dir), result, errors)
    result["errors"] = [{"record": p, "error": e} for p, e in errors]
    return result


def _write_outputs(out: Path, result: dict, errors: list[tuple[str, str]]) -> None:
    from medcl.utils import check_writable_dir, shown_paths

    check_writable_dir(out)
    names = shown_paths([e["record"] for e in result["records"]] + [p for p, _ in errors])  # one name per input
    result = {**result, "records": [{**e, "record": n} for e, n in zip(result["records"], names)]}
    errors = [(n, e) for n, (_, e) in zip(names[len(result["records"]):], errors)]
    write_json(out / "predictions.json", result)
    with atomic_write_path(out / "predictions.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["record", *result["labels"]])
        for e in result["records"]:
            w.writerow([e["record"], *(f"{e['probabilities'][c]:.6g}" for c in result["labels"])])
    with atomic_write_path(out / "errors.csv") as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["record", "error"])
        w.writerows(errors)
