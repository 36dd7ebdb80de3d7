"""PI-RADS v2.1 sector maps from existing zone label maps (``medcl zones sectors``).

Users with manual zone segmentations want sector maps too: each input label map (NIfTI, NRRD or
MHA, any orientation, values 0 background, 1 PZ, 2 TZ, 3 DPU, 4 AFS) gives
``<case>_sectors.nii.gz`` on exactly its grid and ``<case>_sectors.json`` (the sector table
``id, name, level, zone, part, side``, the centre used and what of PI-RADS v2.1 is covered); see
:mod:`medcl.postprocess.sectors`. One bad input in a batch is reported and the rest finish.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from medcl.errors import MedclError
from medcl.postprocess.sectors import sector_lut, sector_map
from medcl.utils import ensure_output_dir, write_json

SECTOR_SUFFIXES: tuple[str, ...] = ("_sectors.nii.gz", "_sectors.json")
ZONE_VALUES: tuple[int, ...] = (0, 1, 2, 3, 4)


def zone_labels(image: MetaTensor, path: str | os.PathLike) -> np.ndarray:
    """Integer zone map of a read label image; values outside 0-4 or non-integers are an error naming them."""
    data = image.as_tensor()[0].numpy()
    labels = np.rint(data).astype(np.int64)
    if not np.allclose(data, labels):
        raise MedclError(f"{path}: is not a label map (non-integer voxel values)")
    bad = sorted(set(np.unique(labels).tolist()) - set(ZONE_VALUES))
    if bad:
        raise MedclError(f"{path}: label values {bad[:10]} outside the zone labels {list(ZONE_VALUES)} "
                         "(0 background, 1 PZ, 2 TZ, 3 DPU, 4 AFS); remap the labels first")
    return labels


def write_sector_files(labels: np.ndarray, reference: MetaTensor, out: Path, case: str) -> dict:
    """Write ``<case>_sectors.nii.gz`` (on the grid of ``reference``) and ``<case>_sectors.json``."""
    from medcl.io.image import write_like

    sectors, info = sector_map(labels, np.asarray(reference.affine, dtype=np.float64))
    write_like(sectors, reference, out / f"{case}_sectors.nii.gz", dtype=np.uint8)
    lut = sector_lut(info)
    write_json(out / f"{case}_sectors.json", {"case": case, **lut})
    return lut


def sectors_from_zone_maps(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[dict]:
    """Sector map and table for each zone label map; returns one ``{case, input, status, error}`` row each."""
    from medcl.io.image import read_image
    from medcl.pipelines.zones_segment import case_names

    if not inputs:
        raise MedclError("inputs: no zone maps given")
    out = ensure_output_dir(out_dir, list(inputs))
    rows = []
    for path, case in zip(inputs, case_names(inputs)):
        row = {"case": case, "input": str(path), "status": "ok", "error": ""}
        try:
            if Path(path).is_dir():
                raise MedclError(f"{path}: is a folder; expected a zone label map file (.nii.gz, .nrrd, .mha)")
            image = read_image(path, dtype=None)
            write_sector_files(zone_labels(image, path), image, out, case)
        except MedclError as exc:
            print(f"medcl: error: {exc}", file=sys.stderr)
            row.update(status="error", error=str(exc))
        rows.append(row)
    return rows
