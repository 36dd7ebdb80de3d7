"""Prostate zone segmentation of new scans, and evaluation of label maps against references.

Inference (design section 2; Meyer et al., ISBI 2019): read a NIfTI/NRRD/MHA file or a DICOM
series folder (:func:`medcl.io.image.read_image`), reorient to RAS, scale intensities to the
1st-99th percentile, crop the region of interest, resample it to 0.5 x 0.5 x 3.0 mm (the shared
recipe of :mod:`medcl.transforms.geometry`), run MONAI ``sliding_window_inference`` with Gaussian
blending and left-right flip test-time augmentation, invert the probabilities onto the input
grid with ``Invertd`` before the argmax, and post-process (largest component per zone,
signed-distance gap filling, :mod:`medcl.postprocess`). Per case it writes
``<case>_zones.nii.gz``, ``<case>_uncertainty.nii.gz``, ``<case>_volumes.json``,
``<case>_sectors.nii.gz`` + ``<case>_sectors.json`` and ``<case>_qc.png``; a batch writes
``summary.csv``.

Region of interest (``roi="auto"``, the default): a coarse pass of the same network over the
whole field of view at ``locate_pixdim`` localises the gland, and the network then sees a box
around it plus a margin, at least ``roi_mm`` (default 80 x 80 mm axially, 120 mm cranio-caudally)
large (:mod:`medcl.inferers.zones_roi`); ``roi="center"`` keeps the fixed box centred on the
field of view. The crop is a MONAI ``SpatialCropd`` inverted with the other steps; outside it
the probabilities are background. Only the box is resampled at full resolution. Each case's
row in ``summary.csv`` and its QC image carry flags: gland touching the crop or image border,
implausible gland volume, localisation failure.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Spacing, SpatialCropd
from torch import nn

from medcl.engine.device import autocast_dtype
from medcl.engine.model_card import synthetic_warning
from medcl.errors import MedclError
from medcl.inferers.zones_roi import RoiBox, box_around, centred_box, gland_bbox_mm, quality_flags
from medcl.inferers.zones_window import (
    DEFAULT_MAX_WINDOW,
    DEFAULT_ROI_MM,
    flip_tta_sliding_window,
    native_roi,
    voxel_spacing,
    window_size,
)
from medcl.io.zones_outputs import (
    ZONE_COLOURS,
    write_itksnap_labels,
    write_probabilities,
    write_seg_nrrd,
)
from medcl.postprocess.volumes import ZONE_NAMES, zone_volumes
from medcl.postprocess.zones import clean_zones
from medcl.transforms.geometry import (
    DEFAULT_PIXDIM,
    MedclCompose,
    canonical_transforms,
    invert_to_input,
    percentile_scale,
)
from medcl.utils import atomic_write_path, ensure_output_dir, write_json

DEFAULT_LOCATE_PIXDIM: tuple[float, float, float] = (1.0, 1.0, 3.0)
ROI_MODES: tuple[str, ...] = ("auto", "center")
OUTPUT_SUFFIXES: tuple[str, ...] = (
    "_zones.nii.gz", "_zones.seg.nrrd", "_uncertainty.nii.gz", "_volumes.json", "_sectors.nii.gz",
    "_sectors.json", "_qc.png",
)
PROBABILITY_SUFFIX = "_probabilities.npz"
ITKSNAP_LABELS = "zones_itksnap_labels.txt"
QC_COLOURS: tuple[str, ...] = ZONE_COLOURS


# ----------------------------------------------------------------------------------- the model


@dataclass
class ZonesSegmenter:
    """A zones network plus the inference settings.

    Attributes:
        net: any zones network with ``zone_probabilities(x) -> (probs (B,5,...), unc (B,1,...))``.
        device: where the network runs.
        tta: average with the left-right flipped scan (axis 0 of the RAS grid).
        sw_batch_size: windows per forward pass.
        overlap: sliding-window overlap.
        pixdim: canonical voxel size in mm.
        roi_mm: size of the region of interest in mm (RAS axes); with ``roi="auto"`` the smallest crop.
        roi: ``"auto"`` (localise the gland with a coarse pass, crop around it) or ``"center"``
            (fixed box centred on the field of view).
        locate_pixdim: voxel size in mm of the coarse localisation pass.
        roi_margin_mm: margin around the localised gland.
        max_window: largest sliding window in voxels (rounded to the network's size divisor).
        names: label value -> zone name.
        series: DICOM series UID or description of study folders.
        channel: channel of 4D images.
        card: the checkpoint's model card (:mod:`medcl.engine.model_card`).
        drop_zones: label values never annotated in the training data (from the model card); their
            probability is folded into background, since partial-label training never told them
            apart from background (e.g. AFS for a model trained on PZ/TZ-only data).
    """

    net: nn.Module
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    tta: bool = True
    sw_batch_size: int = 2
    overlap: float = 0.25
    pixdim: tuple[float, ...] = DEFAULT_PIXDIM
    roi_mm: tuple[float, ...] = DEFAULT_ROI_MM
    roi: str = "auto"
    locate_pixdim: tuple[float, ...] = DEFAULT_LOCATE_PIXDIM
    roi_margin_mm: float = 10.0
    max_window: tuple[int, ...] = DEFAULT_MAX_WINDOW
    names: dict[int, str] = field(default_factory=lambda: dict(ZONE_NAMES))
    series: str | None = None
    channel: int | list[int] | None = None
    card: dict = field(default_factory=dict)
    drop_zones: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.roi not in ROI_MODES:
            raise MedclError(f"--roi: {self.roi!r} is not one of {', '.join(ROI_MODES)}")
        self.net = self.net.to(self.device).eval()

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | os.PathLike | Sequence[str | os.PathLike], device: str = "auto", **kwargs: Any
    ) -> ZonesSegmenter:
        """Build the network from medcl ``zones`` checkpoint(s) (safe load) and wrap it.

        Several checkpoints (e.g. cross-validation folds) become a :class:`ZonesEnsemble` that
        averages their probabilities; they must agree on the label map, the voxel size and the
        input channels. The label map and the training voxel size (``data.pixdim``) come from the
        checkpoint(s); the model card is the first one's, marked synthetic if any member is.
        """
        from medcl.engine import load_model_checkpoint, load_state_into, pick_device
        from medcl.nets.dualpath import build_zones_net

        paths = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
        ckpts = [load_model_checkpoint(p, "zones") for p in paths]
        nets = [load_state_into(build_zones_net(c.config.get("model")), c) for c in ckpts]
        settings = [(_zone_names(c.label_map), tuple((c.config.get("data") or {}).get("pixdim") or DEFAULT_PIXDIM),
                     (c.config.get("data") or {}).get("channel")) for c in ckpts]
        for path, other in zip(paths[1:], settings[1:]):
            if other != settings[0]:
                raise MedclError(f"{path}: labels/voxel size/channels {other} differ from {paths[0]} {settings[0]}; "
                                 "an ensemble needs checkpoints of the same kind")
        names, pixdim, channel = settings[0]
        cards = [c.extra.get("model_card") or {} for c in ckpts]
        card = dict(cards[0])
        if len(cards) > 1:
            synthetic = [c for c in cards if c.get("synthetic_only")]
            card = dict(synthetic[0] if synthetic else card, ensemble_of=[str(p) for p in paths])
        kwargs.setdefault("channel", channel)  # as trained
        kwargs.setdefault("drop_zones", never_annotated(card, names))
        net = nets[0] if len(nets) == 1 else ZonesEnsemble(nets)
        return cls(net=net, device=pick_device(device), names=names, pixdim=pixdim, card=card, **kwargs)

    @classmethod
    def from_onnx(cls, folder: str | os.PathLike, **kwargs: Any) -> ZonesSegmenter:
        """Wrap a ``medcl export --format onnx`` zones folder run by onnxruntime (on the CPU)."""
        from medcl.export.onnx import OnnxModel, OnnxZonesNet

        model = OnnxModel(folder, "zones")
        pixdim = tuple((model.card.get("config", {}).get("data") or {}).get("pixdim") or DEFAULT_PIXDIM)
        card = (model.card.get("extra") or {}).get("model_card") or {}
        names = _zone_names(model.card.get("label_map"))
        kwargs.setdefault("drop_zones", never_annotated(card, names))
        return cls(net=OnnxZonesNet(model), names=names, pixdim=pixdim, card=card, **kwargs)

    @property
    def divisor(self) -> list[int]:
        """Per-axis size the network input must be divisible by."""
        spec = getattr(self.net, "spec", None)
        return list(getattr(spec, "divisor", (16, 16, 16)))

    def window(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Sliding-window size: the ROI rounded up to the divisor, capped at ``max_window``."""
        return window_size(shape, self.max_window, self.divisor)

    def native_roi(self, affine: Any) -> list[int]:
        """ROI size in voxels of the RAS-reoriented input grid (``roi_mm`` over each axis's voxel size)."""
        return native_roi(affine, self.roi_mm)

    def _orient_scale(self) -> list:
        orient, spacing = [t for t in canonical_transforms("image", pixdim=self.pixdim)
                           if not isinstance(t, EnsureChannelFirstd)]
        return [orient, percentile_scale("image"), spacing]

    def preprocessing(self, box: RoiBox) -> Compose:
        """Reorient, scale intensities, crop ``box``, resample it (invertible with ``Invertd``).

        The chain is the shared geometry recipe (:func:`medcl.transforms.geometry.canonical_transforms`)
        with the percentile scaling and the ROI crop inserted before the resampling, so only the
        ROI is resampled. It is applied to the channel-first image of
        :func:`medcl.io.image.read_image`, so the recipe's ``EnsureChannelFirstd`` is left out.
        """
        orient, scale, spacing = self._orient_scale()
        crop = SpatialCropd("image", roi_start=box.start, roi_end=box.end)
        return MedclCompose([orient, scale, crop, spacing])

    def locate(self, image: MetaTensor) -> RoiBox:
        """The crop of ``image``: centred (``roi="center"``), or around the gland found by a coarse pass.

        Auto mode resamples the whole reoriented, scaled scan to ``locate_pixdim``, runs the network
        once (no TTA), and boxes the largest component of ``P(gland) > 0.5``
        (:mod:`medcl.inferers.zones_roi`); if none is found it falls back to the centred box.
        """
        orient, scale, _ = self._orient_scale()
        ras = scale(orient({"image": image.clone()}))["image"]
        affine, shape = np.asarray(ras.affine, dtype=np.float64), list(ras.shape[1:])
        if self.roi == "center":
            return centred_box(affine, shape, self.native_roi(affine))
        coarse = Spacing(pixdim=self.locate_pixdim, mode="bilinear")(ras)
        probs = self.infer(coarse.as_tensor()[None], tta=False)[0, :5]
        bbox = gland_bbox_mm((1.0 - probs[0]).numpy(), np.asarray(coarse.affine, dtype=np.float64))
        if bbox is None:
            return centred_box(affine, shape, self.native_roi(affine), mode="center (gland not found)")
        return box_around(bbox, affine, shape, self.roi_mm, self.roi_margin_mm)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        probs, uncertainty = self.net.zone_probabilities(x)
        return torch.cat([probs.float(), uncertainty.float()], dim=1)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, tta: bool | None = None) -> torch.Tensor:
        """Probabilities and uncertainty ``(1, 6, ...)`` on the canonical grid for ``x`` ``(1, 1, ...)``.

        Flip TTA (``tta``, default the segmenter's setting) runs the scan and its left-right
        mirror as one batch and averages the un-flipped outputs.
        """
        tta = self.tta if tta is None else tta
        x = x.to(self.device, torch.float32)
        dtype = autocast_dtype(self.device)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = flip_tta_sliding_window(x, self._predict, self.window(x.shape[2:]), self.sw_batch_size,
                                          self.overlap, tta)
        for value in self.drop_zones:
            out[:, 0] += out[:, value]
            out[:, value] = 0.0
        return out

    def predict(self, image: MetaTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zone probabilities ``(5, X, Y, Z)`` and uncertainty ``(X, Y, Z)`` on the grid of ``image``."""
        probs, uncertainty, _ = self.predict_with_roi(image)
        return probs, uncertainty

    def predict_with_roi(self, image: MetaTensor) -> tuple[torch.Tensor, torch.Tensor, RoiBox]:
        """Zone probabilities ``(5, X, Y, Z)``, uncertainty ``(X, Y, Z)`` on the grid of ``image``, and the crop.

        Args:
            image: a channel-first ``(1, X, Y, Z)`` scan with its RAS affine (``read_image``).

        Probabilities are inverted onto the input grid before any argmax; outside the ROI they
        are background.
        """
        box = self.locate(image)
        pre = self.preprocessing(box)
        data = pre({"image": image.clone()})
        out = self.infer(data["image"][None])[0].cpu()
        pred = MetaTensor(out, meta=dict(data["image"].meta))
        pred.applied_operations = list(data["image"].applied_operations)
        back = invert_to_input("pred", pre, orig_keys="image")({"image": data["image"], "pred": pred})["pred"]
        probs = back.as_tensor()[:5].clamp_min(0.0)
        probs[0] = (1.0 - probs[1:].sum(0)).clamp_min(0.0)
        return probs, back.as_tensor()[5], box


class ZonesEnsemble(nn.Module):
    """Average of several zones networks (fold ensemble): mean probabilities and mean uncertainty.

    Its ``spec.divisor`` is the per-axis least common multiple of the members' divisors.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(nets)
        divisors = [getattr(getattr(n, "spec", None), "divisor", (16, 16, 16)) for n in nets]
        self.spec = type("EnsembleSpec", (), {"divisor": tuple(math.lcm(*d) for d in zip(*divisors))})()

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [net.zone_probabilities(x) for net in self.members]
        return (torch.stack([p.float() for p, _ in outs]).mean(0), torch.stack([u.float() for _, u in outs]).mean(0))


def never_annotated(card: Mapping[str, Any], names: Mapping[int, str]) -> tuple[int, ...]:
    """Label values whose zone no labelled training data set of the model card annotates (none without a card)."""
    data = [d for d in card.get("training_data") or [] if not str(d.get("name", "")).endswith("(unlabeled)")]
    seen = {z for d in data for z in d.get("annotated") or []}
    return tuple(v for v, name in sorted(names.items()) if seen and name not in seen)


def _zone_names(label_map: Mapping | None) -> dict[int, str]:
    """Foreground ``{label: name}`` from a checkpoint label map (``{"PZ": 1, ...}`` or ``{"1": "PZ"}``)."""
    if not label_map:
        return dict(ZONE_NAMES)
    pairs = [(v, k) if isinstance(v, int) else (k, v) for k, v in label_map.items()]
    return {int(value): str(name) for value, name in pairs if int(value) > 0}


def read_scan(
    path: str | os.PathLike, series: str | None = None, channel: int | Sequence[int] | None = None
) -> MetaTensor:
    """Read and validate one scan: a 3D volume (``channel`` of a 4D one) of at least 2 voxels per axis."""
    from medcl.io.image import check_not_constant, read_image

    image = read_image(path, series=series, channel=channel)
    if min(image.shape[1:]) < 2:
        raise MedclError(f"{path}: has shape {tuple(image.shape[1:])}, a single slice; expected a 3D volume")
    check_not_constant(image, path)
    return image


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


def ras_volume(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` reoriented to the closest RAS axes (index grows to patient right, anterior, superior)
    and its voxel size in mm along those axes."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    spacing = np.empty(3)
    spacing[ornt[:, 0].astype(int)] = voxel_spacing(affine)
    return nib.orientations.apply_orientation(volume, ornt), spacing


def axial_display(ras: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of a RAS volume as screen rows x columns in radiological convention:
    patient right on screen left, anterior at the top (letters :data:`AXIAL_LETTERS`)."""
    return ras[::-1, ::-1, k].T


def coronal_display(ras: np.ndarray, j: int) -> np.ndarray:
    """Coronal slice ``j`` of a RAS volume as screen rows x columns: patient right on screen left,
    superior at the top (letters :data:`CORONAL_LETTERS`)."""
    return ras[::-1, j, ::-1].T


# screen (left, right, top, bottom) orientation letters of the QC panels
AXIAL_LETTERS: tuple[str, str, str, str] = ("R", "L", "A", "P")
CORONAL_LETTERS: tuple[str, str, str, str] = ("R", "L", "S", "I")


def _letters(ax: Any, letters: Sequence[str]) -> None:
    style = {"color": "yellow", "fontsize": 9, "fontweight": "bold", "transform": ax.transAxes}
    for text, x, y, ha, va in zip(letters, (0.02, 0.98, 0.5, 0.5), (0.5, 0.5, 0.98, 0.02),
                                  ("left", "right", "center", "center"), ("center", "center", "top", "bottom")):
        ax.text(x, y, text, ha=ha, va=va, **style)


def write_qc_png(
    image: np.ndarray, labels: np.ndarray, affine: np.ndarray, path: Path, n: int = 4, stamp: str = ""
) -> Path:
    """Zones over ``n`` axial slices and one coronal slice through the gland, atomically.

    Radiological convention on every panel (patient right on screen left), with R/L/A/P or
    R/L/S/I letters at the panel edges; ``stamp`` (e.g. a synthetic-training warning) is printed
    across the top of the figure.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    (image, spacing), (labels, _) = ras_volume(image, affine), ras_volume(labels, affine)
    slices = np.nonzero(labels.any(axis=(0, 1)))[0]
    lo, hi = (slices.min(), slices.max()) if slices.size else (0, labels.shape[2] - 1)
    picks = np.unique(np.linspace(lo, hi, n + 2).round().astype(int)[1:-1]) if hi > lo else np.array([lo])
    gland_y = np.nonzero(labels.any(axis=(0, 2)))[0]
    j = int(np.round(gland_y.mean())) if gland_y.size else labels.shape[1] // 2
    panels = [(axial_display(image, k), axial_display(labels, k), spacing[1] / spacing[0], f"axial slice {k}",
               AXIAL_LETTERS) for k in picks]
    panels.append((coronal_display(image, j), coronal_display(labels, j), spacing[2] / spacing[0],
                   f"coronal slice {j}", CORONAL_LETTERS))
    fig = Figure(figsize=(3 * len(panels), 3.6))
    cmap = ListedColormap(QC_COLOURS)
    for ax, (img, lab, aspect, title, letters) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        ax.imshow(img, cmap="gray", aspect=aspect)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=1, vmax=4, alpha=0.45, aspect=aspect,
                  interpolation="nearest")
        ax.set_title(f"{title} (radiological)", fontsize=8)
        _letters(ax, letters)
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=z) for c, z in zip(QC_COLOURS, ZONE_NAMES.values())],
               loc="lower center", ncol=4, fontsize=8)
    if stamp:
        fig.suptitle(stamp, color="red", fontsize=9, fontweight="bold")
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return path


def _write_case(
    segmenter: ZonesSegmenter, path: str | os.PathLike, out: Path, case: str, save_probabilities: bool = False
) -> dict:
    """Segment one scan and write its outputs (each atomically, the volumes JSON last); returns its summary row."""
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
    if save_probabilities:
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


def expected_outputs(out: Path, case: str, save_probabilities: bool = False) -> list[Path]:
    """The files one segmented case leaves in ``out``."""
    return [out / f"{case}{s}" for s in OUTPUT_SUFFIXES + ((PROBABILITY_SUFFIX,) if save_probabilities else ())]


def finished_row(out: Path, case: str, save_probabilities: bool = False) -> dict | None:
    """The summary row of a case whose outputs are all present (``--continue``), else ``None``."""
    import json

    if not all(p.is_file() for p in expected_outputs(out, case, save_probabilities)):
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
    settings = {"tta": tta, "sw_batch_size": sw_batch_size, "overlap": overlap, "roi_mm": tuple(roi_mm)}
    if isinstance(checkpoint, ZonesSegmenter):
        segmenter = checkpoint
    elif engine == "onnxruntime":
        folders = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
        if len(folders) != 1:
            raise MedclError(f"--checkpoint: --engine onnxruntime takes one ONNX export folder, got {len(folders)}")
        segmenter = ZonesSegmenter.from_onnx(folders[0], roi=roi, **settings)
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
        done = finished_row(out, case, save_probabilities) if resume else None
        if done is not None:
            rows.append({"case": case, "input": str(path), "status": "ok", "error": "", **done, "resumed": True})
            continue
        rows.append({**_segment_one(segmenter, path, out, case, save_probabilities), "resumed": False})
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
    return expanded


def _segment_one(
    segmenter: ZonesSegmenter, path: str | os.PathLike, out: Path, case: str, save_probabilities: bool = False
) -> dict:
    start = time.perf_counter()
    row: dict[str, Any] = {"case": case, "input": str(path), "status": "ok", "error": ""}
    try:
        row.update(_write_case(segmenter, path, out, case, save_probabilities))
    except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the batch
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
