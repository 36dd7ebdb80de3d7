"""MONAI transform recipes for SepCLR: preprocessing of 3D MRI / 2D images and two-view augmentation.

Contrastive methods (SimCLR, SepCLR) see two independently augmented views of each sample; each
view gets its own random transform instances here, so the two views differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from monai.transforms import (
    BorderPadd,
    Compose,
    CopyItemsd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandSpatialCropd,
    ResizeWithPadOrCropd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from medcl.transforms.geometry import MedclCompose, unwrap_medcl_error

__all__ = [
    "VIEW_KEYS",
    "augment_views",
    "build_transforms",
    "load_transforms",
    "preprocess_transforms",
    "surface_medcl_errors",
]

VIEW_KEYS = ("view1", "view2")


def load_transforms(spatial_dims: int, key: str = "image") -> list[MapTransform]:
    """Read an image channel-first: SimpleITK (:class:`medcl.io.image.LoadScand`) for 3D scans
    (NIfTI/NRRD/MHA/DICOM), MONAI's default reader for 2D files."""
    if spatial_dims == 3:
        from medcl.io.image import LoadScand

        return [LoadScand(key, image_only=True, ensure_channel_first=True)]
    return [LoadImaged(key, image_only=True), EnsureChannelFirstd(key, channel_dim="no_channel")]


def preprocess_transforms(
    spatial_size: Sequence[int],
    pixdim: Sequence[float] | None = None,
    key: str = "image",
    orientation: str = "RAS",
    intensity: str = "percentile",
) -> list[MapTransform]:
    """Deterministic geometry + intensity chain on a loaded channel-first image.

    3D: canonical orientation and resampling to ``pixdim`` mm; then (``intensity="percentile"``) the
    0.5-99.5 percentile range scaled to [0, 1] (``"none"`` keeps intensities, e.g. images already in
    [0, 1]); then a centred crop/pad to ``spatial_size``.
    """
    chain: list[MapTransform] = []
    if len(spatial_size) == 3:
        chain.append(Orientationd(key, axcodes=orientation))
        if pixdim is not None:
            chain.append(Spacingd(key, pixdim=tuple(pixdim), mode="bilinear"))
    if intensity == "percentile":
        chain.append(ScaleIntensityRangePercentilesd(key, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True))
    chain += [
        ResizeWithPadOrCropd(key, spatial_size=tuple(spatial_size)),
        EnsureTyped(key, dtype=torch.float32, track_meta=True),
    ]
    return chain


def _view_augment(key: str, spatial_size: Sequence[int]) -> list[MapTransform]:
    """Random augmentations of one view (per-sample; a fresh random state per view)."""
    if len(spatial_size) == 2:  # CIFAR-style pad-and-crop translation + intensity changes (cheap)
        return [
            RandSpatialCropd(key, roi_size=tuple(spatial_size), random_size=False),
            RandScaleIntensityd(key, factors=0.2, prob=0.5),
            RandAdjustContrastd(key, prob=0.5, gamma=(0.7, 1.4)),
            RandGaussianNoised(key, prob=0.5, std=0.03),
        ]  # fmt: skip
    return [
        RandAffined(key, prob=0.8, rotate_range=(0.17, 0.17, 0.17), scale_range=0.1, translate_range=(3, 3, 3),
                    padding_mode="border"),
        RandFlipd(key, prob=0.5, spatial_axis=0),
        RandBiasFieldd(key, prob=0.3, coeff_range=(0.0, 0.1)),
        RandAdjustContrastd(key, prob=0.5, gamma=(0.7, 1.4)),
        RandGaussianSmoothd(key, prob=0.2, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0)),
        RandGaussianNoised(key, prob=0.5, std=0.03),
    ]  # fmt: skip


def augment_views(spatial_size: Sequence[int], key: str = "image") -> list[MapTransform]:
    """Copy ``key`` into ``view1``/``view2``, augment each independently, drop ``key`` and the metadata."""
    chain: list[MapTransform] = [EnsureTyped(key, dtype=torch.float32, track_meta=False)]  # cheaper augmentation
    if len(spatial_size) == 2:  # deterministic, so cached by CacheDataset; views crop back to spatial_size
        chain.append(BorderPadd(key, spatial_border=4, mode="reflect"))
    chain.append(CopyItemsd(key, times=2, names=list(VIEW_KEYS)))
    for view in VIEW_KEYS:
        chain += _view_augment(view, spatial_size)
    return [*chain, DeleteItemsd(key)]


def build_transforms(
    spatial_size: Sequence[int],
    pixdim: Sequence[float] | None = None,
    intensity: str = "percentile",
    augment: bool = True,
    load: bool = True,
) -> Compose:
    """(Load +) preprocess (+ two-view augmentation): the training chain, or the inference one."""
    head = load_transforms(len(spatial_size)) if load else []
    tail = augment_views(spatial_size) if augment else []
    return MedclCompose(head + preprocess_transforms(spatial_size, pixdim, intensity=intensity) + tail)


@contextlib.contextmanager
def surface_medcl_errors() -> Iterator[None]:
    """MONAI wraps transform errors in ``RuntimeError``; re-raise a :class:`MedclError` cause as itself."""
    try:
        yield
    except RuntimeError as exc:
        cause = unwrap_medcl_error(exc)
        if cause is exc:
            raise
        raise cause from None
