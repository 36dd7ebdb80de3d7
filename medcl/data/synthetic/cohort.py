"""A synthetic 3D "brain" cohort for contrastive analysis (background = healthy, target = lesions).

Every volume is a smooth ellipsoidal head-like object whose *common* factors vary in both groups:
``shape`` (3 aspect-ratio classes), global ``scale``, grey/white ``contrast`` and the size of two
dark ``ventricles``. Target volumes additionally hold one *salient* lesion of three subtypes
(``bright_round``, ``dark_elongated``, ``ring``) with a known ``lesion_size``. Volumes are generated
vectorised over subjects and voxels, deterministic from the seed, and written as NIfTI (1 mm,
RAS, centred affine) with a manifest CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LESION_SUBTYPES", "SHAPES", "Cohort", "make_cohort", "stratified_split", "write_dataset"]

LESION_SUBTYPES = ("bright_round", "dark_elongated", "ring")
SHAPES = ("round", "long", "flat")
_RADII = np.array([[0.36, 0.36, 0.36], [0.30, 0.42, 0.33], [0.40, 0.38, 0.26]])  # fraction of the size


@dataclass
class Cohort:
    """An in-memory cohort.

    Attributes:
        images: ``(n, 1, S, S, S)`` float32.
        group: ``(n,)`` 0 background / 1 target.
        attributes: per-subject arrays: ``shape`` (int), ``scale``, ``contrast``, ``ventricles``
            (float), ``lesion_subtype`` (int, -1 for background), ``lesion_size`` (NaN for background).
    """

    images: np.ndarray
    group: np.ndarray
    attributes: dict[str, np.ndarray]


def _soft_inside(q: np.ndarray, sharpness: float = 8.0) -> np.ndarray:
    """Smooth indicator of ``q <= 1`` for a normalised squared radius ``q``."""
    return 1.0 / (1.0 + np.exp(np.clip(sharpness * (q - 1.0), -50, 50)))


def _ellipsoid_q(grid: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """``sum_k ((x_k - c_k) / r_k)^2`` for ``(n, 3)`` centres/radii on a ``(3, S, S, S)`` grid."""
    diff = grid[None] - centre[:, :, None, None, None]
    return ((diff / radii[:, :, None, None, None]) ** 2).sum(axis=1)


def _lesions(grid: np.ndarray, centre: np.ndarray, size: np.ndarray, subtype: np.ndarray) -> np.ndarray:
    """Signed lesion intensity maps ``(n, S, S, S)`` for the three subtypes (selected per subject)."""
    ones = np.ones_like(centre)
    round_q = _ellipsoid_q(grid, centre, size[:, None] * ones)
    long_q = _ellipsoid_q(grid, centre, size[:, None] * np.array([2.2, 0.6, 0.6]))
    radius = np.sqrt(round_q)
    ring = np.exp(-(((radius - 1.0) / 0.25) ** 2))
    maps = np.stack([0.5 * _soft_inside(round_q), -0.45 * _soft_inside(long_q), 0.5 * ring])
    return np.take_along_axis(maps, subtype[None, :, None, None, None], axis=0)[0]


def make_cohort(n: int, seed: int = 0, size: int = 32, target_fraction: float = 0.5) -> Cohort:
    """Generate ``n`` volumes of ``size^3`` voxels (background first, then targets)."""
    rng = np.random.default_rng(seed)
    group = (np.arange(n) >= n - round(n * target_fraction)).astype(np.int64)
    shape = rng.integers(0, len(SHAPES), n)
    scale = rng.uniform(0.8, 1.1, n)
    contrast = rng.uniform(0.05, 0.35, n)
    ventricles = rng.uniform(0.04, 0.1, n)
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * 3, indexing="ij"))
    centre = np.full((n, 3), (size - 1) / 2.0)
    radii = _RADII[shape] * scale[:, None] * size
    brain = _soft_inside(_ellipsoid_q(grid, centre, radii))
    white = _soft_inside(_ellipsoid_q(grid, centre, 0.65 * radii))
    offset = np.array([0.12 * size, 0.0, 0.0])
    vent_radii = (ventricles * size)[:, None] * np.array([0.8, 1.6, 1.0])
    vents = _soft_inside(_ellipsoid_q(grid, centre + offset, vent_radii)) + _soft_inside(
        _ellipsoid_q(grid, centre - offset, vent_radii)
    )
    images = brain * (0.5 + contrast[:, None, None, None] * white) * (1.0 - 0.8 * np.clip(vents, 0, 1))
    tg = np.flatnonzero(group == 1)
    subtype = np.full(n, -1, np.int64)
    lesion_size = np.full(n, np.nan)
    subtype[tg] = rng.permutation(np.arange(tg.size) % len(LESION_SUBTYPES))  # subtypes in equal numbers
    lesion_size[tg] = rng.uniform(2.0, 3.5, tg.size) * size / 32
    side = rng.choice([-1.0, 1.0], tg.size)[:, None] * np.array([0.0, 1.0, 0.0])
    lesion_centre = centre[tg] + 0.45 * radii[tg] * side + rng.uniform(-0.1, 0.1, (tg.size, 3)) * radii[tg]
    images[tg] += brain[tg] * _lesions(grid, lesion_centre, lesion_size[tg], subtype[tg])
    images += rng.normal(0.0, 0.02, images.shape)
    attrs = {"shape": shape, "scale": scale, "contrast": contrast, "ventricles": ventricles,
             "lesion_subtype": subtype, "lesion_size": lesion_size}  # fmt: skip
    return Cohort(images[:, None].astype(np.float32), group, attrs)


def stratified_split(cohort: Cohort, test_fraction: float = 0.3, seed: int = 0) -> np.ndarray:
    """``"train"``/``"test"`` per subject, stratified by group and lesion subtype: each of the four strata
    (healthy, three subtypes) sends ``round(test_fraction * size)`` random members to the test split, so a
    small cohort cannot hold most of one subtype out (a salient encoder then meets it mostly at test time)."""
    rng = np.random.default_rng([seed, 1])
    strata = cohort.attributes["lesion_subtype"]  # -1 healthy, else the subtype
    split = np.full(strata.size, "train", dtype=object)
    for k in np.unique(strata):  # at most four strata
        members = rng.permutation(np.flatnonzero(strata == k))
        split[members[: round(test_fraction * members.size)]] = "test"
    return split.astype(str)


def _affine(size: int) -> np.ndarray:
    """1 mm isotropic RAS affine with the volume centred on the origin."""
    affine = np.eye(4)
    affine[:3, 3] = -(size - 1) / 2.0
    return affine


def write_dataset(out_dir: str | Path, n: int, seed: int = 0, size: int = 32, test_fraction: float = 0.3) -> Path:
    """Write ``n`` volumes as NIfTI plus ``manifest.csv`` (path, group, attributes, split); return it."""
    import nibabel as nib

    from medcl.data.manifest import write_manifest
    from medcl.utils import atomic_write_path

    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cohort = make_cohort(n, seed, size)
    split = stratified_split(cohort, test_fraction, seed)
    rows = []
    for i in range(n):
        rel = f"images/sub-{i:04d}.nii.gz"
        img = nib.Nifti1Image(cohort.images[i, 0], _affine(size))
        img.set_sform(_affine(size), code=1)
        img.set_qform(_affine(size), code=1)
        with atomic_write_path(out / rel) as tmp:
            nib.save(img, tmp)
        a = {k: v[i] for k, v in cohort.attributes.items()}
        target = bool(cohort.group[i])
        rows.append({
            "path": rel, "group": "target" if target else "background", "shape": SHAPES[a["shape"]],
            "scale": round(float(a["scale"]), 4), "contrast": round(float(a["contrast"]), 4),
            "ventricles": round(float(a["ventricles"]), 4),
            "lesion_subtype": LESION_SUBTYPES[a["lesion_subtype"]] if target else "",
            "lesion_size": round(float(a["lesion_size"]), 3) if target else "", "split": split[i],
        })  # fmt: skip
    return write_manifest(rows, out / "manifest.csv")
