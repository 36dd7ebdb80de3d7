"""Synthetic T2w-like prostate phantoms with the five-label zone map (design section 2).

Each phantom is a scaled-down pelvis around an ellipsoidal gland with a perturbed outline:

* TZ (label 2): a central ellipsoid shifted anteriorly, intermediate signal;
* PZ (label 1): the rest of the gland behind the AFS, a bright posterolateral crescent;
* AFS (label 4): the anterior band of the gland in front of the TZ, dark;
* DPU (label 3): a tube along the superior-inferior axis through the TZ (lower part), bright rim;
* background: textured soft tissue inside an elliptic body outline, a dark rectum behind the gland.

Anatomy is drawn in world (RAS, mm) coordinates and sampled on an oblique voxel grid of
0.5 x 0.5 x 3 mm (slice axis last) with a random rotation and random in-plane axis flips, so the
stored affine must be honoured to recover a canonical view. A smooth multiplicative bias field and
Rician noise finish the image. Everything is vectorised numpy and deterministic from the seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation

from medcl.data.datalist import write_datalist
from medcl.data.zones_labels import AFS, DPU, MSD_LABELS, PZ, TZ
from medcl.utils import atomic_write_path

__all__ = ["ProstatePhantom", "make_phantom", "write_dataset"]

DEFAULT_SHAPE = (96, 96, 16)
DEFAULT_SPACING = (0.5, 0.5, 3.0)


@dataclass
class ProstatePhantom:
    """One phantom.

    Attributes:
        image: ``(X, Y, Z)`` float32 T2w-like intensities (arbitrary units, about 0-1000).
        label: ``(X, Y, Z)`` uint8 zone labels (0 BG, 1 PZ, 2 TZ, 3 DPU, 4 AFS).
        affine: ``(4, 4)`` voxel-to-RAS-world affine (mm).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray


def _grid_affine(rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """Oblique voxel-to-world affine: random rotation (<= 15 deg) and in-plane flips, centred near 0."""
    rot = Rotation.from_rotvec(rng.normal(size=3) * np.deg2rad(6.0)).as_matrix()
    flips = np.diag([rng.choice([-1.0, 1.0]), rng.choice([-1.0, 1.0]), 1.0])
    linear = rot @ flips @ np.diag(spacing)
    centre = (np.asarray(shape) - 1) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = rng.uniform(-2.0, 2.0, size=3) - linear @ centre
    return affine


def _world_coordinates(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape ``(3, X, Y, Z)``."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:]).reshape(3, *shape)


def _ellipsoid(p: np.ndarray, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Normalised radius ``sum(((p - c) / a)^2)`` (< 1 inside)."""
    return (((p - centre.reshape(3, 1, 1, 1)) / axes.reshape(3, 1, 1, 1)) ** 2).sum(0)


def _zone_map(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Zone labels at world points ``p`` (3, X, Y, Z) for a random gland centred at the origin."""
    scale = rng.uniform(0.8, 1.15)
    gland_axes = scale * np.array([rng.uniform(11, 14), rng.uniform(8, 10), rng.uniform(10, 13)])
    x, y, z = p
    # outline perturbed by low-order harmonics of the in-plane angle
    theta = np.arctan2(y, x)
    wobble = 1 + 0.06 * np.sin(2 * theta + rng.uniform(0, 2 * np.pi)) + 0.04 * np.cos(3 * theta)
    gland = _ellipsoid(p, np.zeros(3), gland_axes) < wobble**2
    tz_frac = rng.uniform(0.55, 0.7)
    tz_centre = np.array([0.0, 0.2 * gland_axes[1], 0.1 * gland_axes[2]])
    tz = gland & (_ellipsoid(p, tz_centre, tz_frac * gland_axes * np.array([1.0, 0.9, 1.1])) < 1)
    afs = gland & ~tz & (y > tz_centre[1] + 0.25 * gland_axes[1])
    radius = rng.uniform(1.5, 2.2)
    path_y = tz_centre[1] + 0.15 * z  # urethra leans anteriorly towards the apex-base axis
    dpu = gland & ((x**2 + (y - path_y) ** 2) < radius**2) & (z < tz_centre[2] + 0.3 * gland_axes[2])
    label = np.zeros(p.shape[1:], dtype=np.uint8)
    for value, mask in ((PZ, gland), (TZ, tz), (AFS, afs), (DPU, dpu)):
        label[mask] = value
    return label


def _intensities(rng: np.random.Generator, p: np.ndarray, label: np.ndarray) -> np.ndarray:
    """T2w-like signal: zone means with texture, body outline, rectum, blur, bias field, Rician noise."""
    means = np.array([0.35, 0.8, 0.45, 0.7, 0.15]) * rng.uniform(0.9, 1.1, size=5)
    texture = gaussian_filter(rng.normal(size=label.shape), sigma=(2.0, 2.0, 0.5))
    image = means[label] + 0.08 * texture / (texture.std() + 1e-8)
    x, y, z = p
    body = (x / 70.0) ** 2 + ((y + 5) / 50.0) ** 2 < 1
    rectum = (label == 0) & (x**2 / 9.0**2 + (y + 17.0) ** 2 / 5.0**2 < 1)
    image = np.where(body, image, 0.02)
    image[rectum] = 0.1
    image = gaussian_filter(image, sigma=(0.7, 0.7, 0.0))
    coeffs = rng.normal(scale=0.004, size=3)
    bias = np.exp(np.tensordot(coeffs, p, axes=1))
    noise = rng.normal(scale=0.03, size=(2, *label.shape))
    signal = np.sqrt((image * bias + noise[0]) ** 2 + noise[1] ** 2)
    return (1000.0 * signal).astype(np.float32)


def make_phantom(
    seed: int | np.random.Generator,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
) -> ProstatePhantom:
    """Generate one phantom (deterministic from ``seed``)."""
    rng = np.random.default_rng(seed)
    affine = _grid_affine(rng, shape, spacing)
    p = _world_coordinates(affine, shape)
    label = _zone_map(rng, p)
    return ProstatePhantom(_intensities(rng, p, label), label, affine)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_write_path(path) as tmp:
        nib.save(image, tmp)
    return path


def write_dataset(
    out_dir: str | os.PathLike,
    n: int = 10,
    seed: int = 0,
    n_validation: int | None = None,
    n_unlabeled: int = 0,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
) -> Path:
    """Write ``n`` labelled phantoms (+ ``n_unlabeled`` unlabeled) as NIfTI and a datalist.

    Args:
        out_dir: output folder (``imagesTr/``, ``labelsTr/``, ``dataset.json``).
        n: labelled cases; the last ``n_validation`` (default ``max(1, n // 5)``) go to
            ``validation``, the rest to ``training``.
        seed: base seed; case ``i`` uses ``seed * 100003 + i``.
        n_unlabeled: extra image-only cases listed under ``unlabeled``.
        shape: voxel grid size (spacing is 0.5 x 0.5 x 3 mm).

    Returns:
        The path of the MSD-style datalist ``dataset.json``.
    """
    out = Path(out_dir)
    n_val = max(1, n // 5) if n_validation is None else n_validation
    items = []
    for i in range(n + n_unlabeled):
        ph = make_phantom(seed * 100003 + i, shape)
        item = {"image": _save_nifti(ph.image, ph.affine, out / "imagesTr" / f"phantom_{i:03d}.nii.gz")}
        if i < n:
            path = out / "labelsTr" / f"phantom_{i:03d}.nii.gz"
            item["label"] = _save_nifti(ph.label, ph.affine, path)
        items.append(item)
    lists = {"training": items[: n - n_val], "validation": items[n - n_val : n]}
    if n_unlabeled:
        lists["unlabeled"] = items[n:]
    return write_datalist(
        out / "dataset.json",
        lists,
        name="medcl prostate phantoms",
        description=f"synthetic T2w-like prostate phantoms, seed {seed}",
        labels=MSD_LABELS,
        modality={"0": "T2"},
        synthetic=True,
    )
