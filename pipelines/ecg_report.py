"""``medcl ecg report``: ProtoECGNet predictions -> clinician HTML reports, an index and report.json.

Flow for a batch: expand folders to WFDB records; load the checkpoint once; read every file once
(shown at the display rate and as the model reads it; a record that cannot be read is listed as a
failure and the batch goes on); one :func:`medcl.pipelines.ecg_predict.predict` pass over the
records already read; one batched captum Integrated-Gradients call over every (record, finding)
pair; then :func:`medcl.explain.report.write_report_batch` renders the pages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medcl.errors import MedclError
from medcl.io.ecg import find_records, record_name

if TYPE_CHECKING:
    from medcl.pipelines.ecg_model import ECGModel

MODEL_FS = 100.0
MODEL_SAMPLES = 1000
DISPLAY_FS = 250.0


def expand_records(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Record paths (WFDB records without extension) from files/record names and folders of records."""
    return list(dict.fromkeys(record_name(p) for p in find_records(inputs)))


def read_inputs(
    records: Sequence[str], fs: float = MODEL_FS, n_samples: int | None = MODEL_SAMPLES,
    highpass: float | None = 0.5, display_fs: float = DISPLAY_FS, **source: Any,
) -> tuple[dict, dict, list[dict]]:
    """Read each record for display and as the model sees it; unreadable ones become failure entries.

    Returns:
        ``(ecgs: record -> ECGInput, model_signals: record -> (12, n_samples) float32, failures)``.
    """
    ecgs, model_records, failures = read_views(records, fs, n_samples, highpass, display_fs, **source)
    return ecgs, {rec: r.signal for rec, r in model_records.items()}, failures


def read_views(
    records: Sequence[str], fs: float = MODEL_FS, n_samples: int | None = MODEL_SAMPLES,
    highpass: float | None = 0.5, display_fs: float = DISPLAY_FS, **source: Any,
) -> tuple[dict, dict, list[dict]]:
    """Like :func:`read_inputs`, reading each file once; the model's view as ``record -> ECGRecord``."""
    from medcl.explain.report import ECGInput
    from medcl.io.ecg import read_ecg_views
    from medcl.io.ecg_labels import describe_codes
    from medcl.utils import progress_bar

    views = [{"fs": display_fs, "highpass": highpass, "upsample": True}, {"fs": fs, "n_samples": n_samples, "highpass": highpass}]
    ecgs, model_records, failures = {}, {}, []
    for rec in progress_bar(records, "reading ECGs"):
        try:
            shown, model_records[rec] = read_ecg_views(rec, views, **source)
        except MedclError as exc:
            failures.append({"record": rec, "error": str(exc)})
            continue
        except Exception as exc:  # a reader bug on an odd file: reported per record, the batch goes on
            failures.append({"record": rec, "error": f"{rec}: cannot read record ({type(exc).__name__}: {exc})"})
            continue
        ecgs[rec] = ECGInput(rec, shown.signal, shown.fs, list(shown.comments),
                             labels=describe_codes(shown.dx_snomed), derived_leads=list(shown.derived_leads),
                             format=shown.format)
    return ecgs, model_records, failures


def source_lookup(roots: Sequence[str | os.PathLike], display_fs: float = DISPLAY_FS) -> Callable:
    """Resolve a prototype's ``source_record`` to ``(signal, fs)``: a WFDB path as stored, or below a root.

    Returns None for sources that cannot be found (the report then says so); results are cached.
    """
    import functools

    from medcl.io.ecg import read_ecg

    @functools.lru_cache(maxsize=512)
    def lookup(source: str) -> tuple[np.ndarray, float] | None:
        for base in [Path(source), *(Path(r) / source for r in roots)]:
            if base.with_suffix(".hea").is_file() or Path(f"{base}.hea").is_file():
                try:
                    rec = read_ecg(base, fs=display_fs, upsample=True)
                except MedclError:
                    return None
                return rec.signal, rec.fs
        return None

    return lookup


@dataclass
class ReportModel:
    """The trained network as the attributions need it.

    Attributes:
        ecg: the loaded checkpoint (network, config, labels, extras).
        forward: ``(B, 12, T) -> (B, L)`` probabilities of the checkpoint's output head (fusion or
            branch classifiers), the quantity the report's findings are thresholded on.
        device: where the network lives (inputs are moved there).
        fs, n_samples, highpass: how the model reads a record.
        labels: the output codes in column order.
        card: the model card (:func:`medcl.explain.model_card.model_card`).
    """

    ecg: ECGModel
    forward: Callable
    device: Any
    fs: float
    n_samples: int | None
    highpass: float | None
    labels: list[str]
    card: dict


def load_report_model(checkpoint: str | os.PathLike | ECGModel, device: str = "auto") -> ReportModel:
    """Load a ProtoECGNet checkpoint (or take a loaded one) for attributions (eval mode, on ``device``)."""
    from medcl.engine.device import pick_device
    from medcl.explain.model_card import model_card
    from medcl.pipelines.ecg_model import ECGModel, head_probabilities, load_model

    ecg = checkpoint if isinstance(checkpoint, ECGModel) else load_model(checkpoint)
    dev = pick_device(device)
    net, cfg = ecg.net.to(dev).eval(), ecg.cfg
    head = ecg.head

    def forward(x: Any) -> Any:
        return head_probabilities(net, net(x), head)

    return ReportModel(ecg, forward, dev, float(cfg.data.fs), cfg.data.length, cfg.data.highpass,
                       list(ecg.labels), model_card(ecg.extra))


def attribute(
    predictions: dict, signals: dict[str, np.ndarray], forward: Callable, ig_steps: int = 32,
    internal_batch_size: int = 64, device: Any = None,
) -> dict[tuple[str, str], np.ndarray]:
    """Integrated Gradients for every (record, finding) pair of ``predictions``, in one batched call."""
    import torch

    from medcl.explain.ecg_attribution import integrated_gradients

    index = {code: k for k, code in enumerate(predictions["labels"])}
    order = [r["record"] for r in predictions["records"]]
    pairs = [(i, r["record"], f["code"]) for i, r in enumerate(predictions["records"]) for f in r["findings"]]
    if not pairs:
        return {}
    device = device or torch.device("cpu")
    batch = torch.from_numpy(np.stack([signals[rec] for rec in order])).to(device)
    attr = integrated_gradients(forward, batch, [p[0] for p in pairs], [index[p[2]] for p in pairs],
                                n_steps=ig_steps, internal_batch_size=internal_batch_size)
    return {(rec, code): a for (_, rec, code), a in zip(pairs, attr)}


def write_pdfs(out_dir: Path, names: Sequence[str]) -> list[Path]:
    """Print each report page to PDF with headless Chromium (``--pdf``)."""
    from medcl.explain.browser import Chromium, find_chromium, print_pdf

    if find_chromium() is None:
        raise MedclError("--pdf: needs headless Chromium (Debian package 'chromium'; `make browser`)")
    with Chromium() as chrome:
        return [print_pdf(out_dir / n, (out_dir / n).with_suffix(".pdf"), chrome) for n in names]


def write_reports(
    records: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    ig_steps: int = 32,
    source_roots: Sequence[str | os.PathLike] = (),
    pdf: bool = False,
    source_fs: float | None = None,
    source_leads: list[str] | None = None,
) -> Path:
    """Write one HTML report per ECG, ``index.html`` and ``report.json`` into ``out_dir``.

    Args:
        records: WFDB record paths (with or without extension) or folders of records.
        checkpoint: a ProtoECGNet checkpoint (``medcl ecg train``).
        out_dir: output folder.
        batch_size: model batch size of the prediction pass.
        ig_steps: Integrated Gradients integration steps.
        source_roots: folders where prototype source records (training ECGs) are looked up.
        pdf: also print every report to PDF with headless Chromium.
        source_fs, source_leads: sampling rate and lead names of ``.npy``/``.csv`` inputs.

    Returns:
        Path of ``index.html``.
    """
    from medcl.explain.report import write_report_batch
    from medcl.pipelines.ecg_predict import predict
    from medcl.utils import ensure_output_dir

    paths = expand_records(records)
    out = ensure_output_dir(out_dir, paths)
    model = load_report_model(checkpoint)
    source = {"source_fs": source_fs, "source_leads": source_leads}
    ecgs, model_records, failures = read_views(paths, model.fs, model.n_samples, model.highpass, **source)
    predictions: dict = {"labels": [], "thresholds": {}, "records": []}
    if ecgs:
        predictions = predict(model_records, model.ecg, out_dir=None, batch_size=batch_size)
        failures += predictions.pop("errors", [])
    signals = {rec: r.signal for rec, r in model_records.items()}
    attributions = attribute(predictions, signals, model.forward, ig_steps, device=model.device)
    index = write_report_batch(
        predictions, ecgs, out, attributions=attributions, sources=source_lookup(source_roots),
        failures=failures, extra={"checkpoint": Path(checkpoint).name}, card=model.card,
    )
    if pdf:
        write_pdfs(out, [r["html"] for r in _ok_entries(out)])
    return index


def _ok_entries(out: Path) -> list[dict]:
    import json

    return [e for e in json.loads((out / "report.json").read_text())["records"] if e["status"] == "ok"]
