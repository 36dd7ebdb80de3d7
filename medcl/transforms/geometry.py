"""The shared geometry recipe: load -> channel first -> canonical orientation -> target spacing, and back.

Every family that works on 3D scans uses the same chain so that predictions can be inverted onto
the exact input grid: MONAI ``Orientationd`` and ``Spacingd`` record what they did on the
``MetaTensor`` and ``Invertd`` undoes it (no hand-written resampling). The default spacing is the
anisotropic 0.5 x 0.5 x 3.0 mm of the prostate zone network (Meyer et al., 2019, "Towards
patient-individual PI-RADS v2 sector map: CNN for automatic segmentation of prostatic zones from
T2-weighted MRI", ISBI).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    MapTransform,
    Orientationd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from medcl.errors import MedclError
from medcl.io.image import LoadScand

__all__ = [
    "CANONICAL_AXCODES",
    "DEFAULT_PIXDIM",
    "MedclCompose",
    "canonical_transforms",
    "invert_to_input",
    "load_canonical",
    "percentile_scale",
    "surface_medcl_errors",
    "unwrap_medcl_error",
]

DEFAULT_PIXDIM = (0.5, 0.5, 3.0)
CANONICAL_AXCODES = "RAS"

Keys = str | Sequence[str]


def unwrap_medcl_error(error: BaseException) -> BaseException:
    """The :class:`MedclError` that MONAI wrapped in ``RuntimeError("applying transform ...")``, else ``error``."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, MedclError):
            return cause
        cause = cause.__cause__
    return error


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


class MedclCompose(Compose):
    """``Compose`` that re-raises a user error from inside the chain as the one-line :class:`MedclError`
    (:func:`surface_medcl_errors` around the chain)."""

    def __call__(
        self, input_: Any, start: int = 0, end: int | None = None, threading: bool = False, lazy: bool | None = None
    ) -> Any:
        with surface_medcl_errors():
            return super().__call__(input_, start=start, end=end, threading=threading, lazy=lazy)


def canonical_transforms(
    keys: Keys,
    pixdim: Sequence[float] | None = DEFAULT_PIXDIM,
    mode: str | Sequence[str] = "bilinear",
    axcodes: str = CANONICAL_AXCODES,
) -> list[MapTransform]:
    """Channel first, reorient to ``axcodes``, resample to ``pixdim`` (skipped when ``None``).

    Args:
        keys: image (and label) keys.
        pixdim: target voxel size in mm along the canonical axes; ``None`` keeps the input spacing.
        mode: interpolation per key (``"bilinear"`` for images, ``"nearest"`` for labels).
        axcodes: canonical orientation.
    """
    chain: list[MapTransform] = [
        EnsureChannelFirstd(keys),
        Orientationd(keys, axcodes=axcodes, labels=None),
    ]
    if pixdim is not None:
        chain.append(Spacingd(keys, pixdim=tuple(pixdim), mode=mode))
    return chain


def load_canonical(
    keys: Keys,
    pixdim: Sequence[float] | None = DEFAULT_PIXDIM,
    mode: str | Sequence[str] = "bilinear",
    axcodes: str = CANONICAL_AXCODES,
    series: str | None = None,
    channel: int | Sequence[int] | None = None,
) -> MedclCompose:
    """Read with :class:`~medcl.io.image.SITKReader` (errors propagate) and apply `canonical_transforms`.

    ``channel`` picks one channel of 4D images, or several as input channels (an item's own
    ``channel`` key wins).

    Returns:
        An invertible :class:`MedclCompose`; pass it to :func:`invert_to_input` to map outputs back.
    """
    return MedclCompose(
        [
            LoadScand(keys, series=series, channel=channel, image_only=True),
            *canonical_transforms(keys, pixdim=pixdim, mode=mode, axcodes=axcodes),
        ]
    )


def percentile_scale(keys: Keys, lower: float = 1.0, upper: float = 99.0) -> ScaleIntensityRangePercentilesd:
    """Clip intensities to the ``lower``-``upper`` percentiles and scale them to [0, 1] (per image and channel)."""
    return ScaleIntensityRangePercentilesd(
        keys, lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True, channel_wise=True
    )


def invert_to_input(
    keys: Keys, transform: Compose, orig_keys: Keys | None = None, nearest_interp: bool = False
) -> Invertd:
    """``Invertd`` mapping ``keys`` (e.g. predictions) back onto the grid the ``orig_keys`` image was read on.

    Args:
        keys: keys to invert in place.
        transform: the chain that produced ``orig_keys`` (e.g. from :func:`load_canonical`).
        orig_keys: keys whose recorded operations are undone (default: ``keys``).
        nearest_interp: use nearest-neighbour resampling (for label maps) instead of each
            transform's own mode (keep ``False`` for probabilities and argmax afterwards).
    """
    return Invertd(keys, transform=transform, orig_keys=orig_keys, nearest_interp=nearest_interp)
