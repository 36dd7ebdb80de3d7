"""PI-RADS v2.1 sector maps: hand-built glands, orientation invariance, real MSD label maps."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine

from medcl.postprocess.sectors import sector_lut, sector_map, sector_table

TABLE = {row["id"]: row for row in sector_table()}
ZONE_OF = {"PZ": 1, "TZ": 2, "DPU": 3, "AS": 4}


def _lookup(ids: np.ndarray, key: str) -> np.ndarray:
    return np.asarray([TABLE[int(i)][key] for i in ids])


def _phantom():
    """RAS-aligned 1 x 1 x 3 mm gland: TZ core, DPU column at x=10, PZ shell behind, AFS in front."""
    labels = np.zeros((21, 21, 9), dtype=np.uint8)
    labels[3:18, 3:11, :] = 1  # PZ: posterior (low A = low j)
    labels[3:5, 11:14, :] = labels[16:18, 11:14, :] = 1  # PZ anterior horns
    labels[5:16, 8:16, :] = 2  # TZ
    labels[9:12, 10:13, :] = 3  # DPU, centroid x = 10, y = 11
    labels[6:15, 16:19, :] = 4  # AFS anterior
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    return labels, affine


def test_table_has_unique_ids_and_names():
    assert len(TABLE) == 39
    assert len({r["name"] for r in TABLE.values()}) == 39
    assert {r["level"] for r in TABLE.values()} == {"base", "mid", "apex"}


def test_every_gland_voxel_gets_one_sector_of_its_own_zone():
    labels, affine = _phantom()
    sectors, info = sector_map(labels, affine)
    assert ((sectors > 0) == (labels > 0)).all()
    ids = sectors[labels > 0]
    assert (np.vectorize(ZONE_OF.get)(_lookup(ids, "zone")) == labels[labels > 0]).all()
    assert info["centre_from"] == "DPU"
    assert info["centre_ras"] == pytest.approx([10.0, 11.0, 12.0])


def test_sides_levels_and_pz_parts_follow_the_geometry():
    labels, affine = _phantom()
    sectors, _ = sector_map(labels, affine)
    idx = np.argwhere((labels > 0) & (labels != 3))
    ids = sectors[tuple(idx.T)]
    side = _lookup(ids, "side")
    assert ((side == "R") == (idx[:, 0] >= 10)).all()  # RAS +x points to the patient's right
    assert ((side == "L") == (idx[:, 0] < 10)).all()
    level = _lookup(ids, "level")
    assert (level[idx[:, 2] >= 6] == "base").all() and (level[idx[:, 2] <= 2] == "apex").all()
    assert (level[(idx[:, 2] >= 3) & (idx[:, 2] <= 5)] == "mid").all()
    assert TABLE[int(sectors[10, 3, 4])]["part"] == "pm"  # straight behind the urethra
    assert TABLE[int(sectors[3, 9, 4])]["part"] == "pl"  # far lateral, slightly posterior
    assert TABLE[int(sectors[4, 12, 4])]["name"] == "mid PZa L"  # anterior horn, patient left (low RAS x)
    assert TABLE[int(sectors[17, 12, 4])]["name"] == "mid PZa R"
    assert TABLE[int(sectors[8, 14, 4])]["name"] == "mid TZa L"
    assert TABLE[int(sectors[8, 9, 0])]["name"] == "apex TZp L"


def test_sector_map_does_not_depend_on_voxel_orientation():
    labels, affine = _phantom()
    sectors, _ = sector_map(labels, affine)
    ornt = np.array([[2, -1], [0, 1], [1, -1]])  # permute and flip the voxel axes
    moved = nib.orientations.apply_orientation(labels, ornt)
    moved_affine = affine @ nib.orientations.inv_ornt_aff(ornt, labels.shape)
    moved_sectors, _ = sector_map(moved, moved_affine)
    assert (moved_sectors == nib.orientations.apply_orientation(sectors, ornt)).all()


@pytest.mark.parametrize("name", ["prostate_00.nii", "prostate_01.nii"])
def test_real_msd_sectors_partition_the_gland_split_at_the_tz_centroid(shared_data, name):
    nii = nib.load(shared_data / "mri" / "msd-prostate-labels" / name)
    labels = np.asarray(nii.dataobj).astype(np.uint8)
    sectors, info = sector_map(labels, nii.affine)
    assert ((sectors > 0) == (labels > 0)).all()  # exactly one sector per gland voxel
    ras = apply_affine(nii.affine, np.argwhere(labels > 0))
    centre = apply_affine(nii.affine, np.argwhere(labels == 2)).mean(0)
    assert info["centre_from"] == "TZ" and info["centre_ras"] == pytest.approx(centre.tolist())
    ids = sectors[labels > 0]
    assert ((_lookup(ids, "side") == "L") == (ras[:, 0] < centre[0])).all()  # RAS -x: patient left
    s = ras[:, 2]
    third = (s - s.min()) / (s.max() - s.min())
    level = _lookup(ids, "level")
    assert (level[third > 0.67] == "base").all() and (level[third < 0.33] == "apex").all()
    assert set(np.unique(level)) == {"base", "mid", "apex"}
    lut = sector_lut(info)
    assert lut["sectors"] == sector_table() and lut["centre_from"] == "TZ"
