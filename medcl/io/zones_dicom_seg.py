"""Zone label maps as DICOM Segmentation objects (``--dicom-seg``) for PACS, written with ``highdicom``.

The SEG references the source MR series (its Study, Series and SOP Instance UIDs, from the DICOM
files the scan was read from) and holds one binary segment per zone, coded with SNOMED-CT
anatomy (category "Anatomical structure"; PZ, TZ, prostatic urethra for DPU, AFS; the codes of
DICOM CID 6300 as ``pydicom`` ships them). Its frames lie on the source images' planes: every
pixel of every source slice is mapped through the DICOM geometry (Image Position/Orientation,
Pixel Spacing) into the label map's voxel grid, so the SEG is right whatever axis order or flips
the label array has. ``highdicom`` is an optional extra (``pip install medcl[dicom-seg]``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcl.errors import MedclError
from medcl.utils import atomic_write_path

SEG_SUFFIX = "_zones.seg.dcm"
ZONE_SNOMED: dict[str, str] = {
    "PZ": "PeripheralZoneOfTheProstate",
    "TZ": "TransitionZoneOfTheProstate",
    "DPU": "ProstaticUrethra",
    "AFS": "AnteriorFibromuscularStromaOfProstate",
}
"""Zone name -> ``pydicom.sr.codedict.codes.SCT`` keyword of its SNOMED-CT code (DPU: the prostatic
urethra, the closest coded structure)."""
GRID_TOLERANCE = 0.05
"""Largest distance (in voxels) of a source pixel centre from a label-map voxel centre."""


def require_highdicom() -> Any:
    try:
        import highdicom
    except ModuleNotFoundError:
        raise MedclError("--dicom-seg: needs highdicom; install it with pip install 'medcl[dicom-seg]'") from None
    return highdicom


def read_source_headers(files: Sequence[str | os.PathLike]) -> list[Any]:
    """The pydicom headers (no pixel data) of the source series' files."""
    import pydicom

    return [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]


def labels_on_source_frames(labels: np.ndarray, affine: np.ndarray, headers: Sequence[Any]) -> np.ndarray:
    """The label map resampled (nearest voxel) onto each source image's pixel grid: ``(n_images, rows, cols)``.

    Args:
        labels: label map ``(X, Y, Z)`` on the grid of ``affine``.
        affine: voxel-to-RAS (mm) affine of ``labels``.
        headers: single-frame source images (Image Position/Orientation (Patient), Pixel Spacing, Rows, Columns).

    Raises:
        MedclError: a source pixel lies off the label map's voxel centres (the grids differ).
    """
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    origin = np.array([h.ImagePositionPatient for h in headers], dtype=np.float64)  # (n, 3) LPS
    orient = np.array([h.ImageOrientationPatient for h in headers], dtype=np.float64)  # (n, 6)
    spacing = np.array([h.PixelSpacing for h in headers], dtype=np.float64)  # (n, 2): row, column spacing
    along_row = orient[:, :3] * spacing[:, 1:2]  # step to the next column
    along_col = orient[:, 3:] * spacing[:, :1]  # step to the next row
    r, c = np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64)
    lps = (origin[:, None, None] + r[None, :, None, None] * along_col[:, None, None]
           + c[None, None, :, None] * along_row[:, None, None])  # (n, rows, cols, 3)
    to_voxel = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    ras = lps * np.array([-1.0, -1.0, 1.0])
    voxel = ras @ to_voxel[:3, :3].T + to_voxel[:3, 3]
    index = np.rint(voxel).astype(np.int64)
    shape = np.asarray(labels.shape[:3])
    if np.abs(voxel - index).max() > GRID_TOLERANCE or (index < 0).any() or (index >= shape).any():
        raise MedclError("--dicom-seg: the source DICOM images do not lie on the segmented grid")
    return np.asarray(labels)[index[..., 0], index[..., 1], index[..., 2]].astype(np.uint8)


def segment_descriptions(names: Mapping[int, str], algorithm_version: str) -> list[Any]:
    """One highdicom ``SegmentDescription`` per zone (segment number = label value)."""
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="medcl zones", version=algorithm_version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    return [hd.seg.SegmentDescription(
        segment_number=value, segment_label=name,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=getattr(codes.SCT, ZONE_SNOMED.get(name, "Prostate")),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
    ) for value, name in sorted(names.items())]


def write_dicom_seg(
    labels: np.ndarray, affine: np.ndarray, source_files: Sequence[str | os.PathLike], path: str | os.PathLike,
    names: Mapping[int, str], description: str = "medcl prostate zones",
) -> Path:
    """Write the zone map ``labels`` (on the grid of ``affine``) as a DICOM SEG of its source series, atomically.

    Args:
        labels: integer zone map ``(X, Y, Z)`` on the grid the scan was read onto.
        affine: voxel-to-RAS affine of that grid.
        source_files: the single-frame DICOM files of the source series.
        path: output file (``<case>_zones.seg.dcm``).
        names: label value -> zone name; the values must be 1..N (DICOM segment numbers).
        description: the SEG's series and content description (at most 64 characters).
    """
    hd = require_highdicom()
    import medcl

    if sorted(names) != list(range(1, len(names) + 1)):
        raise MedclError(f"--dicom-seg: label values {sorted(names)} are not 1..{len(names)} (DICOM segment numbers)")
    headers = read_source_headers(source_files)
    frames = labels_on_source_frames(labels, affine, headers)
    frames[frames > len(names)] = 0
    version = getattr(medcl, "__version__", "0")
    number = int(getattr(headers[0], "SeriesNumber", 0) or 0) + 1000
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(names, version), series_instance_uid=hd.UID(),
        series_number=number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medcl",
        manufacturer_model_name="medcl zones", software_versions=version, device_serial_number="none",
        series_description=description[:64], content_description=description[:64], content_label="ZONES",
    )
    with atomic_write_path(path) as tmp:
        seg.save_as(str(tmp))
    return Path(path)
