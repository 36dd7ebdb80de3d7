"""MONAI transform recipes for SepCLR: loading and preprocessing of 3D MRI / 2D images.

The chains here are deterministic (so ``CacheDataset`` caches their output); the two random views
of each sample are made from whole batches on the training device by
:mod:`medcl.transforms.batch_augment`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    ResizeWithPadOrCropd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from medcl.transforms.geometry import MedclCompose, surface_medcl_errors

__all__ = [
    "MatchChannelsd",
    "build_transforms",
    "load_transforms",
    "preprocess_transforms",
    "surface_medcl_errors",
]


#: ITU-R BT.601 luma weights (PIL's ``convert("L")``, torchvision's ``rgb_to_grayscale``).
_LUMA = (0.299, 0.587, 0.114)


class MatchChannelsd(MapTransform):
    """Bring a channel-first 2D image to ``channels`` channels: grey -> RGB by repetition, RGB(A) ->
    grey by BT.601 luma, RGBA -> RGB by dropping alpha; anything else is a one-line error naming the file."""

    def __init__(self, keys: str, channels: int) -> None:
        super().__init__(keys)
        self.channels = channels

    def _convert(self, img: torch.Tensor) -> torch.Tensor:
        have = img.shape[0]
        if have == self.channels:
            return img
        if have == 4 and self.channels in (1, 3):  # RGBA: drop alpha first
            img, have = img[:3], 3
            if self.channels == 3:
                return img
        if have == 1 and self.channels == 3:
            return img.repeat(3, *([1] * (img.ndim - 1)))
        if have == 3 and self.channels == 1:
            weights = torch.as_tensor(_LUMA, dtype=img.dtype).view(3, *([1] * (img.ndim - 1)))
            return (img * weights).sum(0, keepdim=True)
        from medcl.errors import MedclError

        name = getattr(img, "meta", {}).get("filename_or_obj", "image")
        raise MedclError(f"{name}: has {have} channels; model.in_channels is {self.channels} (1 grey or 3 RGB)")

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._convert(d[key])
        return d


def load_transforms(spatial_dims: int, key: str = "image", channels: int = 1) -> list[MapTransform]:
    """Read an image channel-first: SimpleITK (:class:`medcl.io.image.LoadScand`) for 3D scans
    (NIfTI/NRRD/MHA/DICOM), MONAI's default reader for 2D files (PNG/JPEG through PIL, grey or RGB,
    brought to ``channels`` channels)."""
    if spatial_dims == 3:
        from medcl.io.image import LoadScand

        return [LoadScand(key, image_only=True, ensure_channel_first=True)]
    return [LoadImaged(key, image_only=True), EnsureChannelFirstd(key), MatchChannelsd(key, channels)]


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


def build_transforms(
    spatial_size: Sequence[int],
    pixdim: Sequence[float] | None = None,
    intensity: str = "percentile",
    augment: bool = True,
    load: bool = True,
    channels: int = 1,
) -> Compose:
    """(Load +) preprocess: the training chain (``augment=True``: plain tensors, augmented later on the
    device by :mod:`medcl.transforms.batch_augment`), or the inference one (MetaTensors)."""
    head = load_transforms(len(spatial_size), channels=channels) if load else []
    tail = [EnsureTyped("image", dtype=torch.float32, track_meta=False)] if augment else []  # plain tensors to train
    return MedclCompose(head + preprocess_transforms(spatial_size, pixdim, intensity=intensity) + tail)
