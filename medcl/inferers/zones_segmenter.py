"""Prostate zone inference on one scan: :class:`ZonesSegmenter` (design section 2; Meyer et al., ISBI 2019).

Reorient to RAS, scale intensities to the 1st-99th percentile, crop the region of interest,
resample it to 0.5 x 0.5 x 3.0 mm (the shared recipe of :mod:`medcl.transforms.geometry`), run MONAI
``sliding_window_inference`` with Gaussian blending and left-right flip test-time augmentation, and
invert the probabilities onto the input grid with ``Invertd`` before any argmax.

Region of interest (``roi="auto"``, the default): a coarse pass of the same network over the
whole field of view at ``locate_pixdim`` localises the gland, and the network then sees a box
around it plus a margin, at least ``roi_mm`` (default 80 x 80 mm axially, 120 mm cranio-caudally)
large (:mod:`medcl.inferers.zones_roi`); ``roi="center"`` keeps the fixed box centred on the
field of view. The crop is a MONAI ``SpatialCropd`` inverted with the other steps; outside it
the probabilities are background. Only the box is resampled at full resolution.

The batch workflow (inputs, per-case errors, output files, ``summary.csv``) is
:mod:`medcl.pipelines.zones_segment`; this module imports no workflow, Lightning or loss code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Spacing, SpatialCropd
from torch import nn

from medcl.data.zones_labels import ZONE_HOST
from medcl.engine.device import autocast_dtype
from medcl.errors import MedclError
from medcl.inferers.zones_roi import RoiBox, box_around, centred_box, gland_bbox_mm
from medcl.inferers.zones_window import (
    DEFAULT_MAX_WINDOW,
    DEFAULT_ROI_MM,
    flip_tta_sliding_window,
    native_roi,
    window_size,
)
from medcl.postprocess.volumes import ZONE_NAMES
from medcl.transforms.geometry import (
    DEFAULT_PIXDIM,
    MedclCompose,
    canonical_transforms,
    invert_to_input,
    percentile_scale,
)

__all__ = ["DEFAULT_LOCATE_PIXDIM", "PRECISIONS", "ROI_MODES", "ZonesEnsemble", "ZonesSegmenter", "never_annotated", "read_scan",
           "zone_names"]

DEFAULT_LOCATE_PIXDIM: tuple[float, float, float] = (1.5, 1.5, 3.0)
"""Voxel size of the coarse localisation pass: a 384 x 384 field of view at 0.5 mm becomes 128 x 128."""
LOCATE_MAX_WINDOW: tuple[int, int, int] = (256, 256, 64)
"""Largest window of the coarse pass: a whole field of view up to 384 mm at 1.5 mm runs as one window."""
ROI_MODES: tuple[str, ...] = ("auto", "center")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

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
            probability is folded into the zone that partial labels draw them as (DPU into TZ, AFS
            into background; :data:`medcl.data.zones_labels.ZONE_HOST`), since partial-label
            training never told them apart from it.
        precision: ``"auto"`` (bfloat16 autocast on a GPU that has it, else float32), ``"fp32"``, or
            ``"bf16"`` (bfloat16 autocast on any device; on a CPU with AVX-512 BF16 about twice as fast).
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
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.roi not in ROI_MODES:
            raise MedclError(f"--roi: {self.roi!r} is not one of {', '.join(ROI_MODES)}")
        if self.precision not in PRECISIONS:
            raise MedclError(f"--precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
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
        from medcl.engine import load_model_checkpoint, pick_device
        from medcl.engine.checkpoint import build_from
        from medcl.nets.dualpath import build_zones_net

        paths = [checkpoint] if isinstance(checkpoint, (str, os.PathLike)) else list(checkpoint)
        ckpts = [load_model_checkpoint(p, "zones") for p in paths]
        nets = [build_from(c, lambda c=c: build_zones_net(c.config.get("model"))) for c in ckpts]
        settings = [(zone_names(c.label_map), tuple((c.config.get("data") or {}).get("pixdim") or DEFAULT_PIXDIM),
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
    def from_onnx(cls, folder: str | os.PathLike, device: str = "auto", **kwargs: Any) -> ZonesSegmenter:
        """Wrap a ``medcl export --format onnx`` zones folder run by onnxruntime on ``device``
        (execution providers from :func:`medcl.export.onnx.onnx_providers`)."""
        from medcl.export.onnx import OnnxModel, OnnxZonesNet

        model = OnnxModel(folder, "zones", device=device)
        pixdim = tuple((model.card.get("config", {}).get("data") or {}).get("pixdim") or DEFAULT_PIXDIM)
        card = (model.card.get("extra") or {}).get("model_card") or {}
        names = zone_names(model.card.get("label_map"))
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

        Auto mode resamples the whole reoriented, scaled scan to ``locate_pixdim`` (default 1.5 x 1.5 x
        3 mm, a sixth of the full-resolution voxels at 0.5 mm), runs the network once over it as one
        window (no TTA, no overlapping windows), and boxes the largest component of ``P(gland) > 0.5``
        (:mod:`medcl.inferers.zones_roi`); if none is found it falls back to the centred box.
        """
        orient, scale, _ = self._orient_scale()
        ras = orient({"image": image.clone()})["image"]
        affine, shape = np.asarray(ras.affine, dtype=np.float64), list(ras.shape[1:])
        if self.roi == "center":
            return centred_box(affine, shape, self.native_roi(affine))
        coarse = Spacing(pixdim=self.locate_pixdim, mode="bilinear")(scale({"image": ras})["image"])
        x = coarse.as_tensor()[None]
        probs = self.infer(x, tta=False, window=window_size(x.shape[2:], LOCATE_MAX_WINDOW, self.divisor))[0, :5]
        bbox = gland_bbox_mm((1.0 - probs[0]).numpy(), np.asarray(coarse.affine, dtype=np.float64))
        if bbox is None:
            return centred_box(affine, shape, self.native_roi(affine), mode="center (gland not found)")
        return box_around(bbox, affine, shape, self.roi_mm, self.roi_margin_mm)

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        probs, uncertainty = self.net.zone_probabilities(x)
        return torch.cat([probs.float(), uncertainty.float()], dim=1)

    @torch.inference_mode()
    def infer(self, x: torch.Tensor, tta: bool | None = None, window: Sequence[int] | None = None) -> torch.Tensor:
        """Probabilities and uncertainty ``(1, 6, ...)`` on the canonical grid for ``x`` ``(1, 1, ...)``.

        Flip TTA (``tta``, default the segmenter's setting) runs the scan and its left-right
        mirror as one batch and averages the un-flipped outputs. ``window``: the sliding-window size
        (default :meth:`window`).
        """
        tta = self.tta if tta is None else tta
        x = x.to(self.device, torch.float32)
        dtype = {"auto": autocast_dtype(self.device), "fp32": None, "bf16": torch.bfloat16}[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = flip_tta_sliding_window(x, self._predict, window or self.window(x.shape[2:]), self.sw_batch_size,
                                          self.overlap, tta)
        for value in self.drop_zones:  # into the zone a partial label draws it as (DPU -> TZ, AFS -> BG)
            host = ZONE_HOST.get(value, 0)
            out[:, host if host not in self.drop_zones else 0] += out[:, value]
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


def zone_names(label_map: Mapping | None) -> dict[int, str]:
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
