"""TexDigits: a 2D contrastive-analysis toy set (background textures, target textures + digits).

Background images are 32x32 grey crops of one of 10 scikit-image bundled pictures (the *common*
factor, ``texture``) at half intensity; target images are the same kind of crop at half intensity
plus a scikit-learn handwritten digit at half intensity (the *salient* factor, ``digit``), as the
official CIFAR-10-MNIST set of Louiset et al. (ICLR 2024) builds them (``0.5 * cifar`` and
``0.5 * cifar + 0.5 * mnist``): the digit is always bright, one consistent pattern for the salient
encoder to find. (An earlier version painted the digit in the ink opposite to the crop's mean; the
polarity then followed the texture, and short CPU runs read the digit from C as well as from S.) Train and test draw crops from disjoint image regions (left/right part
of each picture) and digits from disjoint digit indices. Everything is generated vectorised and is
deterministic from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["SIZE", "TEXTURES", "TexDigits", "crop_contrast", "make_texdigits", "most_textured", "write_dataset"]

SIZE = 32
#: the 10 scikit-image pictures used as texture sources (label = index).
TEXTURES = (
    "brick", "grass", "gravel", "camera", "coins", "moon", "page", "astronaut", "coffee", "immunohistochemistry",
)  # fmt: skip
_TRAIN_FRACTION = 0.7  # left part of each picture (columns) and first part of the digit indices
_DIGIT_SIZE = 24


@dataclass
class TexDigits:
    """An in-memory TexDigits sample set.

    Attributes:
        images: ``(n, 1, 32, 32)`` float32 in [0, 1].
        group: ``(n,)`` int, 0 background / 1 target.
        texture: ``(n,)`` int texture source (common label).
        digit: ``(n,)`` int digit class for targets, -1 for background (salient label).
    """

    images: np.ndarray
    group: np.ndarray
    texture: np.ndarray
    digit: np.ndarray


@lru_cache(maxsize=1)
def _textures() -> tuple[np.ndarray, ...]:
    """The texture pictures as float32 grey images in [0, 1]."""
    from skimage import data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float32

    out = []
    for name in TEXTURES:
        img = getattr(data, name)()
        out.append(img_as_float32(rgb2gray(img) if img.ndim == 3 else img))
    return tuple(out)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits upsampled to 24x24 masks in [0, 1], and their labels."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    masks = zoom(d.images / 16.0, (1, _DIGIT_SIZE / 8, _DIGIT_SIZE / 8), order=1)
    return np.clip(masks, 0.0, 1.0).astype(np.float32), d.target.astype(np.int64)


def _crops(tex: np.ndarray, n: int, split: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` random 32x32 crops from the train (left) or test (right) columns of ``tex``."""
    h, w = tex.shape
    cut = int(w * _TRAIN_FRACTION)
    lo, hi = (0, cut - SIZE) if split == "train" else (cut, w - SIZE)
    ys = rng.integers(0, h - SIZE + 1, n)
    xs = rng.integers(lo, hi + 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(tex, (SIZE, SIZE))
    return windows[ys, xs]


def crop_contrast(texture: int, split: str, quantile: float = 0.1, n: int = 2000, seed: int = 0) -> float:
    """The ``quantile`` of the per-crop standard deviation of ``n`` random 32x32 crops of picture ``texture``
    in the ``split`` region: low values mean that many crops are flat (no texture left to recognise)."""
    crops = _crops(_textures()[texture], n, split, np.random.default_rng(seed))
    return float(np.quantile(crops.std(axis=(1, 2)), quantile))


def most_textured(k: int) -> list[int]:
    """The ``k`` pictures whose crops are the most reliably textured, in index order: ranked by the
    10th-percentile crop contrast (:func:`crop_contrast`), the lower of the train and test regions.

    Measured: gravel 0.128, grass 0.123, coins 0.075, brick 0.068, immunohistochemistry 0.057, coffee 0.028,
    astronaut 0.008, page 0.007 (its test region has blank margins), moon 0.007, camera 0.005 (sky).
    """
    worst = [min(crop_contrast(t, "train"), crop_contrast(t, "test")) for t in range(len(TEXTURES))]
    return sorted(np.argsort(worst)[::-1][:k].tolist())


def _blend(crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``0.5 * crop + 0.5 * digit`` (the official CIFAR-MNIST blend), digit masks centred."""
    pad = (SIZE - _DIGIT_SIZE) // 2
    full = np.zeros_like(crops)
    full[:, pad : pad + _DIGIT_SIZE, pad : pad + _DIGIT_SIZE] = masks
    return 0.5 * crops + 0.5 * full


def make_texdigits(
    n: int,
    seed: int = 0,
    split: str = "train",
    target_fraction: float = 0.5,
    textures: Sequence[int] | None = None,
    digits: Sequence[int] | None = None,
) -> TexDigits:
    """Generate ``n`` TexDigits samples (first the background, then the target ones).

    Args:
        n: number of images.
        seed: random seed (the result is a pure function of the arguments).
        split: ``"train"`` or ``"test"`` (disjoint picture regions and digit indices).
        target_fraction: fraction of target images.
        textures: texture indices to draw from (default: all 10).
        digits: digit classes to draw from (default: 0-9).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    texture = rng.choice(np.arange(len(TEXTURES)) if textures is None else np.asarray(textures), n)
    group = (np.arange(n) >= n - round(n * target_fraction)).astype(np.int64)
    images = np.empty((n, SIZE, SIZE), np.float32)
    for k, tex in enumerate(_textures()):  # loop over the 10 sources, vectorised within each
        rows = np.flatnonzero(texture == k)
        images[rows] = _crops(tex, rows.size, split, rng)
    masks, labels = _digits()
    cut = int(len(labels) * _TRAIN_FRACTION)
    pool = np.arange(cut) if split == "train" else np.arange(cut, len(labels))
    if digits is not None:
        pool = pool[np.isin(labels[pool], digits)]
    tg = np.flatnonzero(group == 1)
    picks = rng.choice(pool, tg.size)
    images[tg] = _blend(images[tg], masks[picks])
    images[group == 0] *= 0.5  # backgrounds: the crop at half intensity, as in the blend
    digit = np.full(n, -1, np.int64)
    digit[tg] = labels[picks]
    return TexDigits(images[:, None], group, texture.astype(np.int64), digit)


def write_dataset(out_dir: str | Path, n: int, seed: int = 0, test_fraction: float = 0.3) -> Path:
    """Write ``n`` TexDigits images as 2D NIfTI files plus ``manifest.csv``; return the manifest path.

    The manifest has ``path`` (relative to the manifest), ``group``, ``texture``, ``digit`` (empty for
    background) and ``split`` columns.
    """
    import nibabel as nib

    from medcl.data.manifest import write_manifest
    from medcl.utils import atomic_write_path

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    n_test = int(round(n * test_fraction))
    rows = []
    for split, count in (("train", n - n_test), ("test", n_test)):
        ds = make_texdigits(count, seed, split)
        for i in range(count):
            rel = f"images/{split}_{i:05d}.nii.gz"
            img = nib.Nifti1Image(ds.images[i, 0], np.eye(4))
            with atomic_write_path(out / rel) as tmp:
                nib.save(img, tmp)
            digit = "" if ds.digit[i] < 0 else int(ds.digit[i])
            group = "target" if ds.group[i] else "background"
            rows.append({"path": rel, "group": group, "texture": int(ds.texture[i]), "digit": digit, "split": split})
    return write_manifest(rows, out / "manifest.csv")
