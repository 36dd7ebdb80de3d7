"""Prostate zone segmentation of new scans (the batch workflow), and evaluation of label maps against references.

The per-scan inference is :class:`medcl.inferers.zones_segmenter.ZonesSegmenter`; this module finds
the inputs (NIfTI/NRRD/MHA files, folders of them, DICOM series folders), runs the segmenter on each
with per-case error handling, post-processes (largest component per zone, signed-distance gap
filling, :mod:`medcl.postprocess`) and writes per case ``<case>_zones.nii.gz``,
``<case>_zones.seg.nrrd``, ``<case>_uncertainty.nii.gz``, ``<case>_volumes.json``,
``<case>_sectors.nii.gz`` + ``<case>_sectors.json`` and ``<case>_qc.png``
(:mod:`medcl.explain.zones_qc`); a batch writes ``summary.csv``. Each case's row in
``summary.csv`` and its QC image carry flags: gland touching the crop or image border,
implausible gland volume, localisation failure.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import MetaTensor

from medcl.engine.model_card import synthetic_warning
from medcl.errors import MedclError
from medcl.inferers.zones_roi import quality_flags, ras_volume
from medcl.inferers.zones_segmenter import ZonesSegmenter, read_scan
from medcl.inferers.zones_window import DEFAULT_ROI_MM, voxel_spacing
from medcl.io.zones_dicom_seg import SEG_SUFFIX
from medcl.io.zones_outputs import write_itksnap_labels, write_probabilities, write_seg_nrrd
from medcl.postprocess.volumes import ZONE_NAMES, zone_volumes
from medcl.postprocess.zones import clean_zones
from medcl.utils import atomic_write_path, ensure_output_dir, write_json

OUTPUT_SUFFIXES: tuple[str, ...] = (
    "_zones.nii.gz", "_zones.seg.nrrd", "_uncertainty.nii.gz", "_volumes.json", "_sectors.nii.gz",
    "_sectors.json", "_qc.png",
)
PROBABILITY_SUFFIX = "_probabilities.npz"
ITKSNAP_LABELS = "zones_itksnap_labels.txt"


# ----------------------------------------------------------------------------------- per case


def case_names(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Case name per input (file name without image suffixes, or the DICOM folder's name), unique by
    construction (:func:`medcl.utils.unique_names`: ``x/s``, ``y/s``, ``z/s_2`` -> ``s``, ``s_3``, ``s_2``)."""
    from medcl.utils import unique_names

    names = []
    for item in inputs:
        name = Path(item).name
        for suffix in (".gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
            name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        names.append(name)
    return unique_names(names)


def _write_case(
    segmenter: ZonesSegmenter, path: str | os.PathLike, out: Path, case: str, optional: Sequence[str] = ()
) -> dict:
    """Segment one scan and write its outputs (each atomically, the volumes JSON last); returns its summary row.

    ``optional``: the optional outputs to write too, by suffix (:data:`PROBABILITY_SUFFIX`, :data:`SEG_SUFFIX`).
    """
    from medcl.explain.zones_qc import write_qc_png
    from medcl.io.image import write_like
    from medcl.pipelines.zones_sectors import write_sector_files

    image = read_scan(path, segmenter.series, segmenter.channel)
    probs, uncertainty, box = segmenter.predict_with_roi(image)
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = voxel_spacing(affine)
    labels = clean_zones(probs.max(0).indices.numpy(), spacing, tuple(segmenter.names))  # max: faster than argmax
    volumes = zone_volumes(labels, affine, segmenter.names)
    flags = quality_flags(ras_volume(labels > 0, affine)[0], box, volumes["gland"])
    files = {s: out / f"{case}{s}" for s in OUTPUT_SUFFIXES}
    write_like(labels, image, files["_zones.nii.gz"], dtype=np.uint8)
    write_seg_nrrd(labels, affine, files["_zones.seg.nrrd"], segmenter.names)
    if SEG_SUFFIX in optional:
        from medcl.io.image import choose_series
        from medcl.io.zones_dicom_seg import write_dicom_seg

        write_dicom_seg(labels, affine, choose_series(path, segmenter.series).files, out / f"{case}{SEG_SUFFIX}",
                        segmenter.names, _seg_description(segmenter))
    if PROBABILITY_SUFFIX in optional:
        channels = ["BG", *(segmenter.names[k] for k in sorted(segmenter.names))]
        write_probabilities(probs.numpy(), image, out / f"{case}{PROBABILITY_SUFFIX}", channels)
    write_like(uncertainty.numpy(), image, files["_uncertainty.nii.gz"], dtype=np.float32)
    write_sector_files(labels, image, out, case)
    warning = synthetic_warning(segmenter.card)
    roi = {"mode": box.mode, "center_mm_ras": box.center_mm, "start_ras": box.start, "end_ras": box.end}
    stamp = "\n".join(x for x in (warning, "; ".join(f"FLAG: {f}" for f in flags)) if x)
    write_qc_png(image.as_tensor()[0].numpy(), labels, affine, files["_qc.png"], stamp=stamp)
    row = {**{f"{z}_ml": round(v, 4) for z, v in volumes["zones"].items()}, "gland_ml": round(volumes["gland"], 4),
           "roi": box.mode, "roi_center_mm_ras": " ".join(f"{c:g}" for c in box.center_mm),
           "flags": "; ".join(flags), "model_warning": warning}
    write_json(files["_volumes.json"], {"case": case, "input": str(path), **volumes, "roi": roi, "flags": flags,
                                        "model": _model_note(segmenter), "summary_row": row})
    return row


def expected_outputs(out: Path, case: str, optional: Sequence[str] = ()) -> list[Path]:
    """The files one segmented case leaves in ``out`` (``optional``: suffixes of the optional outputs asked for)."""
    return [out / f"{case}{s}" for s in (*OUTPUT_SUFFIXES, *optional)]


def finished_row(out: Path, case: str, optional: Sequence[str] = ()) -> dict | None:
    """The summary row of a case whose outputs are all present (``--continue``), else ``None``."""
    import json

    if not all(p.is_file() for p in expected_outputs(out, case, optional)):
        return None
    try:
        row = json.loads((out / f"{case}_volumes.json").read_text())["summary_row"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return dict(row) if isinstance(row, dict) else None


def _model_note(segmenter: ZonesSegmenter) -> dict[str, Any]:
    """What the outputs say about the model that made them (from its model card)."""
    card = segmenter.card
    if not card:
        return {"model_card": None, "note": "checkpoint has no model card; training data unknown"}
    return {"synthetic_only": bool(card.get("synthetic_only")), "warning": synthetic_warning(card),
            "training_data": card.get("training_data", []), "intended_use": card.get("intended_use", "")}


def _check_dicom_inputs(inputs: Sequence[str | os.PathLike]) -> None:
    """``--dicom-seg`` references a source DICOM series: every input must be a DICOM series folder."""
    from medcl.io.zones_dicom_seg import require_highdicom

    for path in inputs:
        if not Path(path).is_dir():
            raise MedclError(f"{path}: --dicom-seg needs a DICOM series folder as input, not an image file")
    require_highdicom()


def _check_channel_exists(inputs: Sequence[str | os.PathLike], channel: int | Sequence[int]) -> None:
    """``--channel 1`` names the second channel of 4D images: a 3D input has none (never read its only one)."""
    from medcl.io.image import channel_count

    wanted = max([channel] if isinstance(channel, int) else list(channel))
    for path in inputs:
        if wanted > 0 and Path(path).is_file() and channel_count(path) == 1:
            raise MedclError(f"{path}: is a 3D image (one channel); --channel {wanted} does not exist in it")


def _seg_description(segmenter: ZonesSegmenter) -> str:
    """The SEG's description; a synthetic-trained model says so."""
    return "medcl zones: SYNTHETIC-TRAINED MODEL, DEMO ONLY" if synthetic_warning(segmenter.card) else "medcl prostate zones"


def _refuse_overwrite(inputs: Sequence[str | os.PathLike], out: Path, names: Sequence[str]) -> None:
    """No output file may be one of the inputs."""
    given = {Path(p).resolve() for p in inputs}
    clash = [str(out / f"{n}{s}") for n in names for s in OUTPUT_SUFFIXES if (out / f"{n}{s}").resolve() in given]
    if clash:
        raise MedclError(f"{clash[0]}: output would overwrite an input; choose another --out")


# ----------------------------------------------------------------------------------- public API


def segment(
    inputs: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | ZonesSegmenter,
    out_dir: str | os.PathLike,
    tta: bool = True,
    device: str = "auto",
    sw_batch_size: int = 2,
    overlap: float = 0.25,
    roi_mm: Sequence[float] = DEFAULT_ROI_MM,
    series: str | None = None,
    channel: int | Sequence[int] | None = None,
    engine: str = "torch",
    roi: str = "auto",
    save_probabilities: bool = False,
    resume: bool = False,
    precision: str = "auto",
    dicom_seg: bool = False,
) -> list[dict]:
    """Segment the prostate zones of each input scan; one bad input is reported and skipped.

    Args:
        inputs: image files (NIfTI/NRRD/MHA), folders of such files (expanded to them), or DICOM
            series folders.
        checkpoint: a medcl ``zones`` checkpoint, several (a fold ensemble: probabilities
            averaged), or a ready :class:`ZonesSegmenter`.
        out_dir: output folder (never an input's folder).
        tta: left-right flip test-time augmentation.
        device: ``"auto"`` (GPU when present, else CPU), ``"cpu"``, ``"cuda:0"``...
        sw_batch_size: sliding windows per forward pass.
        overlap: sliding-window overlap.
        roi_mm: size of the region of interest in mm (the smallest crop with ``roi="auto"``).
        series: DICOM series UID or description for study folders holding several series.
        channel: channel of 4D images (MSD Task05: 0 T2, 1 ADC) or a list of them; default: as the
            checkpoint was trained (``data.channel``).
        engine: ``"torch"``, or ``"onnxruntime"`` with ``checkpoint`` a ``medcl export --format onnx`` folder.
        roi: ``"auto"`` (localise the gland, crop around it) or ``"center"`` (fixed centred box);
            a given :class:`ZonesSegmenter` keeps its own setting.
        save_probabilities: also write ``<case>_probabilities.npz`` (float16, input grid).
        resume: skip cases whose outputs are all present (``--continue``); their rows are read back.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (:class:`ZonesSegmenter`).
        dicom_seg: also write ``<case>_zones.seg.dcm``, a DICOM SEG referencing the source series
            (every input must be a DICOM series folder; needs the ``dicom-seg`` extra).

    Returns:
        One summary row per input (``status`` ``"ok"`` or ``"error"`` with the message); the
        rows are also written to ``out_dir/summary.csv``.
    """
    inputs = expand_inputs(inputs)
    if not inputs:
        raise MedclError("inputs: no scans given")
    out = ensure_output_dir(out_dir, list(inputs))
    names = case_names(inputs)
    _refuse_overwrite(inputs, out, names)
    optional = (*((PROBABILITY_SUFFIX,) if save_probabilities else ()), *((SEG_SUFFIX,) if dicom_seg else ()))
    if dicom_seg:
        _check_dicom_inputs(inputs)
    if channel is not None:
        _check_channel_exists(inputs, channel)
    settings = {"tta": tta, "sw_batch_size": sw_batch_size, "overlap": overlap, "roi_mm": tuple(roi_mm),
                "precision": precision}
    if isinstance(checkpoint, ZonesSegmenter):
        segmenter = checkpoint
    elif engine == "onnxruntime":
        folders = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
        if len(folders) != 1:
            raise MedclError(f"--checkpoint: --engine onnxruntime takes one ONNX export folder, got {len(folders)}")
        segmenter = ZonesSegmenter.from_onnx(folders[0], device=device, roi=roi, **settings)
    elif engine != "torch":
        raise MedclError(f"engine: {engine!r} is not one of ['torch', 'onnxruntime']")
    else:
        segmenter = ZonesSegmenter.from_checkpoint(checkpoint, device=device, roi=roi, **settings)
    segmenter.series = series if series is not None else segmenter.series
    segmenter.channel = channel if channel is not None else segmenter.channel
    if synthetic_warning(segmenter.card):
        print(f"medcl: {synthetic_warning(segmenter.card)}", file=sys.stderr)
    write_itksnap_labels(out / ITKSNAP_LABELS, segmenter.names)
    from medcl.utils import progress_bar

    rows = []
    for path, case in progress_bar(list(zip(inputs, names)), "segment"):
        done = finished_row(out, case, optional) if resume else None
        if done is not None:
            rows.append({"case": case, "input": str(path), "status": "ok", "error": "", **done, "resumed": True})
            continue
        rows.append({**_segment_one(segmenter, path, out, case, optional), "resumed": False})
    _write_csv(out / "summary.csv", rows)
    return rows


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """Folders holding NIfTI/NRRD/MHA files expand to those files (sorted); DICOM folders stay folders."""
    from medcl.data.layouts import IMAGE_EXTS

    expanded: list[str | os.PathLike] = []
    for item in inputs:
        p = Path(item)
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_EXTS)) if p.is_dir() else []
        expanded += files or [item]
    unique: dict[str, str | os.PathLike] = {}
    for item in expanded:  # one scan named twice (or through a link) is segmented once
        unique.setdefault(os.path.realpath(item), item)
    return list(unique.values())


def _segment_one(
    segmenter: ZonesSegmenter, path: str | os.PathLike, out: Path, case: str, optional: Sequence[str] = ()
) -> dict:
    start = time.perf_counter()
    row: dict[str, Any] = {"case": case, "input": str(path), "status": "ok", "error": ""}
    try:
        row.update(_write_case(segmenter, path, out, case, optional))
    except BaseException as exc:  # noqa: BLE001 - one bad scan must not stop the batch
        for partial in expected_outputs(out, case, optional):  # a failed or interrupted case leaves no outputs
            partial.unlink(missing_ok=True)
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit
            raise
        message = str(exc) if isinstance(exc, MedclError) else f"{path}: {type(exc).__name__}: {exc}"
        print(f"medcl: error: {message}", file=sys.stderr)
        row.update(status="error", error=message)
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def evaluate(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, out_dir: str | os.PathLike,
    names: Mapping[int, str] | None = None,
) -> dict:
    """Per-zone Dice, MASD and HD95 (mm) of ``<case>_zones.nii.gz`` predictions against references.

    References are the label files in ``ref_dir`` (case = file name without suffix); the matching
    prediction is ``pred_dir/<case>_zones.nii.gz`` (or a file of the same name). Missing or
    mismatched predictions are counted as failed cases, never dropped silently. The empty-mask
    policy is that of :mod:`medcl.metrics.segmentation`.

    Writes ``per_zone.csv``, ``per_case.csv`` and ``summary.json`` in ``out_dir``.

    Returns:
        The summary dict.
    """
    from medcl.metrics.segmentation import summarize_zone_metrics

    names = dict(names or ZONE_NAMES)
    refs = _reference_files(Path(ref_dir))
    out = ensure_output_dir(out_dir, [])
    zone_rows, case_rows = [], []
    for case, ref in refs.items():
        try:
            rows = _evaluate_case(_prediction_for(Path(pred_dir), case, ref), ref, names)
        except MedclError as exc:
            print(f"medcl: error: {exc}", file=sys.stderr)
            case_rows.append({"case": case, "status": "error", "error": str(exc)})
            continue
        zone_rows += [{"case": case, **r} for r in rows]
        case_rows.append({"case": case, "status": "ok", "error": "", **_case_means(rows)})
    summary = {
        "n_cases": len(refs),
        "n_failed": sum(r["status"] == "error" for r in case_rows),
        "errors": {r["case"]: r["error"] for r in case_rows if r["status"] == "error"},
        "policy": "Dice over cases where either mask is present (one-sided empty = 0); MASD/HD95 "
        "over cases where both are present; both-empty cases counted, not scored",
        "zones": summarize_zone_metrics(zone_rows),
    }
    _write_csv(out / "per_zone.csv", zone_rows or [{"case": ""}])
    _write_csv(out / "per_case.csv", case_rows or [{"case": ""}])
    write_json(out / "summary.json", summary)
    return summary


def _reference_files(ref_dir: Path) -> dict[str, Path]:
    if not ref_dir.is_dir():
        raise MedclError(f"{ref_dir}: reference folder not found")
    files = sorted(p for p in ref_dir.iterdir() if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz", ".nrrd", ".mha")))
    if not files:
        raise MedclError(f"{ref_dir}: no reference label files (.nii, .nii.gz, .nrrd, .mha)")
    return dict(zip(case_names(files), files))


def _prediction_for(pred_dir: Path, case: str, ref: Path) -> Path:
    for candidate in (pred_dir / f"{case}_zones.nii.gz", pred_dir / ref.name):
        if candidate.is_file():
            return candidate
    raise MedclError(f"{pred_dir / f'{case}_zones.nii.gz'}: no prediction for reference {ref}")


def _evaluate_case(pred_path: Path, ref_path: Path, names: Mapping[int, str]) -> list[dict]:
    from medcl.io.image import read_image
    from medcl.metrics.segmentation import zone_metrics

    pred, ref = read_image(pred_path, dtype=None), read_image(ref_path, dtype=None)
    if tuple(pred.shape) != tuple(ref.shape) or not np.allclose(pred.affine, ref.affine, atol=1e-3):
        raise MedclError(f"{pred_path}: grid {tuple(pred.shape[1:])} differs from reference {ref_path}")
    spacing = voxel_spacing(ref.affine)
    return zone_metrics(_labels(pred), _labels(ref), spacing, names)


def _labels(image: MetaTensor) -> np.ndarray:
    return np.rint(image.as_tensor()[0].numpy()).astype(np.int64)


def _case_means(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {f"{r['zone']}_{k}": r[k] for r in rows for k in ("dice", "masd_mm", "hd95_mm")}
