"""CSV manifests of image cohorts: ``path``, ``group`` (background|target), attributes, ``split``.

Everything is checked before any training starts; each problem is one :class:`MedclError` line
naming the manifest, the row (1-based, header excluded) and what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medcl.errors import MedclError

__all__ = ["GROUPS", "RESERVED", "Manifest", "read_manifest"]

GROUPS = {"background": 0, "target": 1}
#: columns with a fixed meaning; every other column is an attribute to probe.
RESERVED = ("path", "group", "split", "subject")
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class Manifest:
    """A validated manifest.

    Attributes:
        source: the CSV file.
        table: the rows (pandas), with ``path`` resolved to absolute paths and a ``subject`` column.
        attributes: attribute column names.
    """

    source: Path
    table: pd.DataFrame

    @property
    def paths(self) -> list[str]:
        return self.table["path"].tolist()

    @property
    def groups(self) -> np.ndarray:
        """0 background, 1 target, -1 unknown (no ``group`` column)."""
        if "group" not in self.table:
            return np.full(len(self.table), -1, np.int64)
        return self.table["group"].map(GROUPS).to_numpy(np.int64)

    @property
    def split(self) -> np.ndarray | None:
        return self.table["split"].astype(str).to_numpy() if "split" in self.table else None

    @property
    def attributes(self) -> list[str]:
        return [c for c in self.table.columns if c not in RESERVED]

    def subset(self, mask: np.ndarray) -> Manifest:
        """Rows where ``mask`` is true."""
        return Manifest(self.source, self.table[mask].reset_index(drop=True))


def _subject_ids(paths: pd.Series) -> pd.Series:
    names = paths.map(lambda p: Path(p).name)
    return names.str.replace(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", regex=True)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MedclError(f"{path}: manifest not found")
    try:
        table = pd.read_csv(path, dtype={"path": str, "group": str, "split": str, "subject": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MedclError(f"{path}: not a readable CSV manifest ({type(exc).__name__})") from None
    if "path" not in table.columns:
        raise MedclError(f"{path}: missing column 'path' (columns: {', '.join(map(str, table.columns))})")
    if table.empty:
        raise MedclError(f"{path}: manifest has no rows")
    return table


def _check_groups(path: Path, table: pd.DataFrame, require_both: bool) -> None:
    groups = table["group"].fillna("").str.strip().str.lower()
    bad = ~groups.isin(list(GROUPS))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MedclError(
            f"{path}: row {row + 1}: unknown group {table['group'].iloc[row]!r}; expected 'background' or 'target'"
        )
    table["group"] = groups
    present = set(groups)
    if require_both and present != set(GROUPS):
        missing = (set(GROUPS) - present).pop()
        raise MedclError(f"{path}: no '{missing}' rows; SepCLR needs both background and target subjects")


def _check_repeats(path: Path, images: pd.Series) -> None:
    """Each image once: a repeated row weighs a subject twice, or puts it in both groups."""
    first: dict[str, int] = {}
    for row, image in enumerate(images):
        key = os.path.realpath(image)
        if key in first:
            raise MedclError(f"{path}: row {row + 1}: {image} repeats the image of row {first[key] + 1}; "
                             "list each image once")
        first[key] = row


def _check_image(path: Path, row: int, image: str) -> None:
    """The file exists and is a readable image with a usable spacing that is not (near-)constant."""
    import SimpleITK as sitk

    p = Path(image)
    if not p.exists():
        raise MedclError(f"{path}: row {row + 1}: image not found: {image}")
    if p.is_dir():
        return  # a DICOM series folder; read (and checked) when loaded
    if not p.name.lower().endswith(_IMAGE_SUFFIXES):
        raise MedclError(f"{path}: row {row + 1}: {image} is not an image file (unknown suffix)")
    from medcl.io.image import check_not_constant, read_header

    try:
        read_header(p)  # readable, with a usable voxel spacing
        voxels = sitk.ReadImage(str(p))  # keep a reference: the array view does not own the voxels
        check_not_constant(sitk.GetArrayViewFromImage(voxels), image)
    except MedclError as exc:
        raise MedclError(f"{path}: row {row + 1}: {exc}") from None
    except RuntimeError:
        raise MedclError(f"{path}: row {row + 1}: {image} is not a readable image") from None


def read_manifest(
    path: str | os.PathLike, require_group: bool = True, require_both: bool = True, check_images: bool = True
) -> Manifest:
    """Read and validate a manifest CSV (relative paths are taken from the manifest's folder).

    Args:
        path: the CSV file.
        require_group: a ``group`` column must exist (training, evaluation).
        require_both: both groups must be present (training).
        check_images: every ``path`` must be an existing, readable image.

    Raises:
        MedclError: naming the manifest, the row and the problem.
    """
    path = Path(path)
    table = _read_table(path)
    if "group" in table.columns:
        _check_groups(path, table, require_both)
    elif require_group:
        raise MedclError(f"{path}: missing column 'group' (background|target)")
    empty = table["path"].fillna("").str.strip() == ""
    if empty.any():
        raise MedclError(f"{path}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 1}: empty 'path'")
    base = path.resolve().parent
    table["path"] = [str(p if Path(p).is_absolute() else base / p) for p in table["path"]]
    _check_repeats(path, table["path"])
    if check_images:
        for row, image in enumerate(table["path"]):
            _check_image(path, row, image)
    if "subject" not in table.columns:
        table["subject"] = _subject_ids(table["path"])
    if "split" in table.columns:
        table["split"] = table["split"].fillna("train").str.strip().str.lower()
    return Manifest(path, table)


def write_manifest(rows: list[dict], path: str | os.PathLike) -> Path:
    """Write manifest rows (dicts with the same keys, ``path`` and ``group`` first) as CSV, atomically."""
    import csv

    from medcl.utils import atomic_write_path

    path = Path(path)
    with atomic_write_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
