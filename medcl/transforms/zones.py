"""MONAI transform recipes of the prostate zone training (design section 2).

Chains (all MONAI dictionary transforms; the deterministic prefix is what ``CacheDataset`` /
``PersistentDataset`` cache):

* ``zones_preprocess``: read (SimpleITK), canonical RAS orientation, 0.5 x 0.5 x 3 mm resampling
  (:mod:`medcl.transforms.geometry`), label remapping, 1-99 percentile scaling to [0, 1], and the
  optional signed-distance target.
* ``zones_train_augment``: padding to the patch size, foreground-aware patch sampling
  (``RandCropByPosNegLabeld``; ``RandSpatialCropSamplesd`` for unlabeled scans), in-plane rotation
  (about the slice axis), scaling and translation (``RandAffined``), left-right flip and
  intensity augmentation (scale, shift, gamma, noise).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSpatialCropSamplesd,
    SpatialPadd,
)
from monai.transforms.utils import distance_transform_edt

from medcl.data.zones_labels import remap_labels, resolve_remap
from medcl.transforms.geometry import DEFAULT_PIXDIM, MedclCompose, load_canonical, percentile_scale

__all__ = [
    "AUX_KEY",
    "GlandSDMd",
    "NearGlandIndicesd",
    "RemapLabelsd",
    "near_gland_indices",
    "signed_distance",
    "zones_preprocess",
    "zones_train_augment",
    "zones_train_transforms",
    "zones_val_transforms",
]

IMAGE, LABEL = "image", "label"
ITEM_KEYS: tuple[str, ...] = ("channel", "zone_remap", "case", "fold", "dataset", "synthetic")
AUX_KEY = "aux"


class RemapLabelsd(MapTransform):
    """Map source label values to the five zone labels (one table lookup per image).

    Args:
        keys: label keys.
        remap: remapper name (``"identity"``, ``"msd"``) or ``{source_value: zone}``.

    Raises:
        MedclError: a label file holds a value the remapper does not cover (names the file).
    """

    def __init__(self, keys: KeysCollection, remap: str | Mapping[int, int] = "identity") -> None:
        super().__init__(keys)
        self.remap = resolve_remap(remap)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Remap; an item's own ``zone_remap`` (datalists of ``medcl data datalist``) wins over the configured one."""
        d = dict(data)
        remap = resolve_remap(d["zone_remap"]) if d.get("zone_remap") else self.remap
        for key in self.key_iterator(d):
            source = getattr(d[key], "meta", {}).get("filename_or_obj", key)
            d[key] = _like(d[key], remap_labels(_plain(d[key]), remap, str(source)))
        return d


def _plain(x: Any) -> torch.Tensor:
    """A plain ``torch.Tensor`` view of a MetaTensor / array."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _like(ref: Any, values: torch.Tensor) -> Any:
    """``values`` in ``ref``'s container (MetaTensor keeps its metadata) as float32."""
    values = torch.as_tensor(values, dtype=torch.float32)
    if hasattr(ref, "meta"):
        out = ref.clone()
        out.data = values
        return out
    return values


def signed_distance(mask: torch.Tensor, spacing: Sequence[float], scale_mm: float = 10.0) -> torch.Tensor:
    """``tanh(d / scale_mm)`` of the signed distance to the mask boundary (negative inside, mm).

    Args:
        mask: ``(1, X, Y, Z)`` boolean gland mask.
        spacing: voxel size in mm.
        scale_mm: distance that maps to ``tanh(1)``.
    """
    m = torch.as_tensor(mask).bool()
    if not m.any():
        return torch.ones(m.shape, dtype=torch.float32)
    sampling = [float(s) for s in spacing]
    outside = distance_transform_edt((~m).float(), sampling=sampling)
    inside = distance_transform_edt(m.float(), sampling=sampling)
    return torch.tanh((torch.as_tensor(outside) - torch.as_tensor(inside)).float() / scale_mm)


FG_INDICES, BG_INDICES = "fg_indices", "bg_indices"


def _spacing_of(label: Any) -> list[float]:
    """Voxel spacing (mm) of a MetaTensor label; 1 mm per axis for a plain array."""
    spacing = getattr(label, "pixdim", None)
    return [float(s) for s in spacing] if spacing is not None else [1.0] * (label.ndim - 1)


def near_gland_indices(label: torch.Tensor, spacing: Sequence[float], margin_mm: float) -> tuple[Any, Any]:
    """Flat voxel indices of the gland (label > 0) and of the background within ``margin_mm`` of it.

    The background set is the peri-glandular shell (rectum, seminal vesicles, bladder neck,
    levator): the tissue that is hardest to tell from the gland. Without a gland, every voxel is
    background.
    """
    import numpy as np
    from scipy import ndimage

    gland = np.asarray(_plain(label))[0] > 0
    if not gland.any():
        return np.zeros(0, dtype=np.int64), np.arange(gland.size, dtype=np.int64)
    distance = ndimage.distance_transform_edt(~gland, sampling=[float(s) for s in spacing])
    return np.flatnonzero(gland), np.flatnonzero(~gland & (distance <= margin_mm))


class NearGlandIndicesd(MapTransform):
    """Store the crop centres of :func:`near_gland_indices` for ``RandCropByPosNegLabeld``.

    Negative (background) patches are then centred on peri-glandular tissue instead of anywhere
    in the field of view (hard negatives).

    Args:
        label_key: five-class label key.
        margin_mm: how far from the gland a background centre may lie.
    """

    def __init__(self, label_key: str = LABEL, margin_mm: float = 20.0) -> None:
        super().__init__([label_key])
        self.label_key, self.margin_mm = label_key, margin_mm

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        spacing = _spacing_of(label)
        d[FG_INDICES], d[BG_INDICES] = near_gland_indices(label, spacing, self.margin_mm)
        return d


class GlandSDMd(MapTransform):
    """Add the auxiliary target ``aux``: squashed signed distance of the whole gland (label > 0).

    Args:
        label_key: five-class label key.
        scale_mm: see :func:`signed_distance`.
    """

    def __init__(self, label_key: str = LABEL, scale_mm: float = 10.0) -> None:
        super().__init__([label_key])
        self.label_key, self.scale_mm = label_key, scale_mm

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        spacing = _spacing_of(label)
        d[AUX_KEY] = _like(label, signed_distance(_plain(label) > 0, spacing, self.scale_mm))
        return d


def zones_preprocess(
    labeled: bool = True,
    remap: str | Mapping[int, int] = "identity",
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdm: bool = False,
    channel: int | None = None,
) -> list[Any]:
    """Deterministic part: load (``channel`` of 4D images), orient, resample, remap, scale (and the SDM target).

    Per-item bookkeeping keys (:data:`ITEM_KEYS`: ``channel``, ``zone_remap``, ``case``...) are dropped after
    use so that items of different data sets batch together.
    """
    keys = [IMAGE, LABEL] if labeled else [IMAGE]
    modes = ["bilinear", "nearest"] if labeled else ["bilinear"]
    chain: list[Any] = list(load_canonical(keys, pixdim=pixdim, mode=modes, channel=channel).transforms)
    chain.append(percentile_scale(IMAGE, 1.0, 99.0))
    if labeled:
        chain.append(RemapLabelsd(LABEL, remap))
        if sdm:
            chain.append(GlandSDMd(LABEL))
    chain.append(DeleteItemsd(list(ITEM_KEYS)))
    return chain


def _spatial_keys(labeled: bool, sdm: bool) -> list[str]:
    return [IMAGE, LABEL] + ([AUX_KEY] if sdm else []) if labeled else [IMAGE]


def zones_train_augment(
    patch_size: Sequence[int],
    labeled: bool = True,
    sdm: bool = False,
    num_samples: int = 2,
    pos: float = 2.0,
    neg: float = 1.0,
    rotate_deg: float = 10.0,
    scale: float = 0.1,
    translate_vox: Sequence[float] = (4.0, 4.0, 0.0),
    flip_lr: bool = True,
    intensity: bool = True,
    neg_margin_mm: float | None = None,
) -> list[Any]:
    """Random part: patch sampling then spatial and intensity augmentation.

    ``neg_margin_mm``: centre background patches on voxels within this distance of the gland
    (:class:`NearGlandIndicesd`) instead of anywhere in the volume. Rotation is about the slice axis (in-plane) and scaling in-plane only, so the thick slices
    are not interpolated across; axis 0 is left-right after RAS orientation.
    """
    keys = _spatial_keys(labeled, sdm)
    modes = ["bilinear", "nearest", "bilinear"][: len(keys)]
    chain: list[Any] = [SpatialPadd(keys, spatial_size=patch_size, mode="constant")]
    if labeled:
        near = neg_margin_mm is not None
        if near:
            chain.append(NearGlandIndicesd(LABEL, neg_margin_mm))
        chain.append(
            RandCropByPosNegLabeld(keys, LABEL, patch_size, pos=pos, neg=neg, num_samples=num_samples,
                                   fg_indices_key=FG_INDICES if near else None,
                                   bg_indices_key=BG_INDICES if near else None)
        )
        if near:
            chain.append(DeleteItemsd([FG_INDICES, BG_INDICES]))
    else:
        chain.append(RandSpatialCropSamplesd(keys, patch_size, num_samples=num_samples, random_size=False))
    chain.append(
        RandAffined(
            keys,
            prob=0.5,
            rotate_range=(0.0, 0.0, math.radians(rotate_deg)),
            scale_range=(scale, scale, 0.0),
            translate_range=tuple(translate_vox),
            mode=modes,
            padding_mode="border",
        )
    )
    if flip_lr:
        chain.append(RandFlipd(keys, prob=0.5, spatial_axis=0))
    if intensity:
        chain += [
            RandScaleIntensityd(IMAGE, factors=0.1, prob=0.5),
            RandShiftIntensityd(IMAGE, offsets=0.1, prob=0.5),
            RandAdjustContrastd(IMAGE, gamma=(0.8, 1.25), prob=0.3),
            RandGaussianNoised(IMAGE, std=0.02, prob=0.3),
        ]
    return chain


def zones_train_transforms(
    patch_size: Sequence[int],
    labeled: bool = True,
    remap: str | Mapping[int, int] = "identity",
    pixdim: Sequence[float] = DEFAULT_PIXDIM,
    sdm: bool = False,
    channel: int | None = None,
    **augment: Any,
) -> Compose:
    """Training chain: :func:`zones_preprocess` + :func:`zones_train_augment` + plain tensors."""
    chain = zones_preprocess(labeled, remap, pixdim, sdm, channel)
    chain += zones_train_augment(patch_size, labeled, sdm, **augment)
    chain.append(EnsureTyped(_spatial_keys(labeled, sdm), dtype=torch.float32, track_meta=False))
    return MedclCompose(chain)


def zones_val_transforms(
    remap: str | Mapping[int, int] = "identity", pixdim: Sequence[float] = DEFAULT_PIXDIM, channel: int | None = None
) -> Compose:
    """Validation chain: whole canonical volumes (sliding-window inference happens in the model)."""
    chain = zones_preprocess(True, remap, pixdim, sdm=False, channel=channel)
    chain.append(EnsureTyped([IMAGE, LABEL], dtype=torch.float32, track_meta=False))
    return MedclCompose(chain)
