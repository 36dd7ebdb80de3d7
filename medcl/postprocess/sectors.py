"""PI-RADS v2.1 sector map computed from a zone label map, in patient (RAS) coordinates.

The sectors follow the PI-RADS v2.1 sector diagram (Turkbey et al., "Prostate Imaging Reporting
and Data System Version 2.1", Eur Urol 2019): base / mid / apex, right / left, PZ anterior (PZa),
posteromedial (PZpm) and posterolateral (PZpl), TZ anterior (TZa) and posterior (TZp), anterior
fibromuscular stroma (AS) right / left. Geometric definitions used here (all in mm, RAS):

* levels: thirds of the gland's extent along the patient S axis (base = superior third);
* right / left: the sagittal plane through the DPU centroid (the TZ centroid when the map has no
  DPU, the gland centroid when it has neither); RAS +x points to the patient's **right** (DICOM
  LPS +x points to the patient's left), so voxels with RAS x above the centre are "R";
* anterior / posterior: the coronal plane through the same centre;
* PZ posteromedial vs posterolateral: the angle between the voxel's in-plane offset from the centre
  and the posterior direction, below / above ``medial_angle`` (45 degrees by default).

The central zone is part of the TZ label in medcl, so the v2.1 CZ sectors are not separated. The
urethra (DPU) is not a PI-RADS sector; it gets one sector per level so that every gland voxel
receives exactly one sector. Orientation of the voxel grid does not matter.
"""

from __future__ import annotations

import numpy as np

LEVELS: tuple[str, ...] = ("base", "mid", "apex")
PIRADS_COVERAGE: dict[str, str] = {
    "covered": "PZa, PZpm, PZpl, TZa, TZp and AS, right and left, at base, mid and apex: 36 of the 38 "
    "prostate sectors of the PI-RADS v2.1 map",
    "not_covered": "the two v2.1 central zone sectors (CZ right/left, base): the CZ is part of the TZ label "
    "in medcl, so CZ voxels fall in the base TZa/TZp sectors; the seminal vesicle and urethral sphincter "
    "sectors (outside the gland) are not mapped",
    "extra": "DPU (distal prostatic urethra) is not a PI-RADS sector; it gets one sector per level so that "
    "every gland voxel receives exactly one sector",
}
SIDES: tuple[str, ...] = ("R", "L")
# (zone label, zone name, part index, part name, sided)
_PARTS: tuple[tuple[int, str, int, str, bool], ...] = (
    (1, "PZ", 0, "a", True),
    (1, "PZ", 1, "pm", True),
    (1, "PZ", 2, "pl", True),
    (2, "TZ", 0, "a", True),
    (2, "TZ", 1, "p", True),
    (4, "AS", 0, "", True),
    (3, "DPU", 0, "", False),
)


def sector_table() -> list[dict]:
    """The sector lookup table: one dict per sector with ``id, name, level, zone, part, side``."""
    rows: list[dict] = []
    for level in LEVELS:
        for label, zone, _, part, sided in _PARTS:
            for side in SIDES if sided else ("",):
                name = " ".join(x for x in (level, zone + part, side) if x)
                rows.append(
                    {"id": len(rows) + 1, "name": name, "level": level, "zone": zone, "label": label,
                     "part": part, "side": side}
                )
    return rows


def _lookup() -> np.ndarray:
    """Dense ``[level, zone label, part, side] -> sector id`` array built from :func:`sector_table`."""
    table = np.zeros((len(LEVELS), 5, 3, 2), dtype=np.uint8)
    part_index = {(label, part): idx for label, _, idx, part, _ in _PARTS}
    for row in sector_table():
        sides = [SIDES.index(row["side"])] if row["side"] else [0, 1]
        table[LEVELS.index(row["level"]), row["label"], part_index[(row["label"], row["part"])], sides] = row["id"]
    return table


def voxel_ras(indices: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World (RAS, mm) coordinates of voxel indices ``(N, 3)`` under a 4x4 RAS affine."""
    affine = np.asarray(affine, dtype=np.float64)
    return indices @ affine[:3, :3].T + affine[:3, 3]


def sector_centre(labels_at: np.ndarray, ras: np.ndarray) -> tuple[np.ndarray, str]:
    """Centre for the left/right and anterior/posterior splits: DPU, else TZ, else gland centroid."""
    for label, name in ((3, "DPU"), (2, "TZ")):
        chosen = labels_at == label
        if chosen.any():
            return ras[chosen].mean(axis=0), name
    return ras.mean(axis=0), "gland"


def _levels(s: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Level index per voxel (0 base, 1 mid, 2 apex) from thirds of the S extent."""
    lo, hi = float(s.min()), float(s.max())
    t = (s - lo) / (hi - lo) if hi > lo else np.full_like(s, 0.5)
    return 2 - np.clip((t * 3).astype(np.int64), 0, 2), [lo, hi]


def _parts(labels_at: np.ndarray, offset: np.ndarray, medial_angle: float) -> np.ndarray:
    """Part index per voxel: PZ a/pm/pl = 0/1/2, TZ a/p = 0/1, other zones 0."""
    anterior = offset[:, 1] > 0
    angle = np.degrees(np.arctan2(np.abs(offset[:, 0]), -offset[:, 1]))
    pz = np.where(anterior, 0, np.where(angle < medial_angle, 1, 2))
    tz = np.where(anterior, 0, 1)
    return np.select([labels_at == 1, labels_at == 2], [pz, tz], 0)


def sector_map(labels: np.ndarray, affine: np.ndarray, medial_angle: float = 45.0) -> tuple[np.ndarray, dict]:
    """PI-RADS v2.1 sector map of a zone label map.

    Args:
        labels: integer zone map ``(X, Y, Z)`` (1 PZ, 2 TZ, 3 DPU, 4 AFS).
        affine: 4x4 voxel-to-RAS matrix (mm) of ``labels``.
        medial_angle: PZ posteromedial / posterolateral boundary in degrees from posterior.

    Returns:
        ``(sectors, info)``: a ``uint8`` map (0 outside the gland, else a sector id from
        :func:`sector_table`) and a dict with the centre used and the S range of the gland.
    """
    labels = np.asarray(labels)
    sectors = np.zeros(labels.shape, dtype=np.uint8)
    idx = np.nonzero(np.isin(labels, (1, 2, 3, 4)))
    if idx[0].size == 0:
        return sectors, {"centre_ras": None, "centre_from": None, "s_range_mm": None}
    labels_at = labels[idx].astype(np.int64)
    ras = voxel_ras(np.stack(idx, axis=1).astype(np.float64), affine)
    centre, source = sector_centre(labels_at, ras)
    level, s_range = _levels(ras[:, 2])
    offset = ras - centre
    side = (offset[:, 0] < 0).astype(np.int64)  # SIDES index: 0 "R" (RAS +x), 1 "L"
    sectors[idx] = _lookup()[level, labels_at, _parts(labels_at, offset, medial_angle), side]
    return sectors, {"centre_ras": centre.tolist(), "centre_from": source, "s_range_mm": s_range}


def sector_lut(info: dict, medial_angle: float = 45.0) -> dict:
    """The JSON document written beside a sector map: table plus how the split was made."""
    return {
        "standard": "PI-RADS v2.1 sector map (CZ within TZ; DPU one sector per level)",
        "coverage": PIRADS_COVERAGE,
        "coordinates": "RAS mm",
        "side_convention": "side R/L is the patient's right/left: RAS +x (DICOM LPS -x) is the patient's right",
        "medial_angle_deg": medial_angle,
        **info,
        "sectors": sector_table(),
    }
