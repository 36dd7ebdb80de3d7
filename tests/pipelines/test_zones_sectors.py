"""PI-RADS sector sides, levels and anterior/posterior on real scanner grids, checked in DICOM LPS.

A zone map is drawn in DICOM patient coordinates (LPS: +x patient left, +y posterior, +z superior)
on the voxel grids of real T2 series (transverse DICOM, sagittal PIR and coronal LIP NRRD, ...),
written with SimpleITK, turned into sectors by ``medcl zones sectors`` and read back with
SimpleITK. The expected side / level / anterior-posterior of every voxel is computed here from its
LPS coordinates only (voxel index -> origin + direction x spacing), independently of medcl's RAS
code, so a left/right swap, a flipped axis or an S/I inversion anywhere in the chain fails.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medcl.cli import main
from medcl.io.image import sitk_affine
from medcl.pipelines.zones_segment import (
    AXIAL_LETTERS,
    CORONAL_LETTERS,
    axial_display,
    coronal_display,
    ras_volume,
)

STUDY = "mri/prostatex-dicom/ProstateX-0000/07-07-2011"
GRIDS = {
    "dicom_tra": f"{STUDY}/4.000000-t2tsetra-00702",
    "dicom_sag": f"{STUDY}/3.000000-t2tsesag-87368",
    "dicom_cor": f"{STUDY}/5.000000-t2tsecor-03471",
    "nrrd_tra": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_tra.nrrd",
    "nrrd_sag": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_sag.nrrd",
    "nrrd_cor": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_cor.nrrd",
}


def _read_grid(path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def _lps_points(image: sitk.Image) -> np.ndarray:
    """LPS mm of every voxel, shape (X, Y, Z, 3): origin + direction @ (spacing * index) (DICOM PS3.3 C.7.6.2)."""
    size = image.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), axis=-1).astype(np.float64)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    return (idx * np.asarray(image.GetSpacing())) @ direction.T + np.asarray(image.GetOrigin())


def _lps_zone_map(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A gland drawn in LPS: 44 x 32 x 36 mm ellipsoid; DPU column, AFS in front, PZ behind and lateral."""
    dx, dy, dz = np.moveaxis(points - centre, -1, 0)
    gland = (dx / 22) ** 2 + (dy / 16) ** 2 + (dz / 18) ** 2 <= 1
    labels = np.where(gland, 2, 0)  # TZ
    labels[gland & (dy > 4)] = 1  # PZ behind (LPS +y is posterior)
    labels[gland & (np.abs(dx) > 15) & (dy > -6)] = 1  # PZ lateral horns, reaching in front of the centre
    labels[gland & (dy < -10)] = 4  # AFS in front
    labels[gland & (np.hypot(dx, dy) <= 3.0)] = 3  # DPU column
    return labels.astype(np.uint8)


@pytest.fixture(scope="module")
def sector_runs(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sectors")
    maps, grids = [], {}
    for name, rel in GRIDS.items():
        grid = _read_grid(shared_data / rel)
        points = _lps_points(grid)
        centre = points.reshape(-1, 3).mean(0)
        labels = _lps_zone_map(points, centre)
        image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)))
        image.CopyInformation(grid)
        path = out / f"{name}.nrrd" if name.endswith("sag") else out / f"{name}.nii.gz"
        sitk.WriteImage(image, str(path))
        maps.append(str(path))
        grids[name] = (grid, points, labels)
    assert main(["zones", "sectors", *maps, "--out", str(out / "sec")]) == 0
    return out / "sec", grids


@pytest.mark.parametrize("name", list(GRIDS))
def test_every_sector_is_on_the_patient_side_level_and_half_given_by_lps(sector_runs, name):
    out, grids = sector_runs
    grid, points, labels = grids[name]
    sec_img = sitk.ReadImage(str(out / f"{name}_sectors.nii.gz"))
    assert sec_img.GetSize() == grid.GetSize()
    assert np.allclose(sec_img.GetOrigin(), grid.GetOrigin(), atol=1e-3)
    assert np.allclose(sec_img.GetDirection(), grid.GetDirection(), atol=1e-5)
    sectors = sitk.GetArrayFromImage(sec_img).transpose(2, 1, 0)
    doc = json.loads((out / f"{name}_sectors.json").read_text())
    table = {row["id"]: row for row in doc["sectors"]}
    assert "CZ" in doc["coverage"]["not_covered"]
    gland = labels > 0
    assert ((sectors > 0) == gland).all()
    lps = points[gland]
    centre = points[labels == 3].mean(0)  # the split is documented to go through the DPU centroid
    rows = [table[int(i)] for i in sectors[gland]]
    side = np.array([r["side"] for r in rows])
    level = np.array([r["level"] for r in rows])
    part = np.array([r["part"] for r in rows])
    zone = labels[gland]
    dx, dy = lps[:, 0] - centre[0], lps[:, 1] - centre[1]
    sided = (zone != 3) & (np.abs(dx) > 1e-3)
    assert sided.sum() > 1000
    expected_side = np.where(dx > 0, "L", "R")  # LPS +x is the patient's left
    assert (side[sided] == expected_side[sided]).all()
    assert {"R", "L"} <= set(side[sided])
    z = lps[:, 2]  # LPS +z is superior: base at the top
    t = (z - z.min()) / (z.max() - z.min())
    away = np.abs(t * 3 - np.round(t * 3)) > 1e-6
    expected_level = np.select([t * 3 >= 2, t * 3 >= 1], ["base", "mid"], "apex")
    assert (level[away] == expected_level[away]).all()
    assert set(level) == {"base", "mid", "apex"}
    halves = np.isin(zone, (1, 2)) & (np.abs(dy) > 1e-3)
    anterior = dy < 0  # LPS -y is anterior
    assert ((part[halves] == "a") == anterior[halves]).all()
    assert set(part[zone == 1]) == {"a", "pm", "pl"} and set(part[zone == 2]) == {"a", "p"}


def test_qc_panels_put_patient_right_on_screen_left_on_a_real_coronal_grid(shared_data):
    grid = _read_grid(shared_data / GRIDS["nrrd_cor"])
    points = _lps_points(grid)
    centre = points.reshape(-1, 3).mean(0)
    d = points - centre
    marker = ((d[..., 0] < -10) & (d[..., 1] < -5) & (d[..., 2] > 5)).astype(np.uint8)  # right, anterior, superior
    ras, _ = ras_volume(marker, sitk_affine(grid))
    axial = axial_display(ras, int(np.argwhere(ras).mean(0)[2].round()))
    rows, cols = np.nonzero(axial)
    assert AXIAL_LETTERS == ("R", "L", "A", "P")
    assert cols.max() < axial.shape[1] / 2 and rows.max() < axial.shape[0] / 2  # screen left (R), top (A)
    coronal = coronal_display(ras, int(np.argwhere(ras).mean(0)[1].round()))
    rows, cols = np.nonzero(coronal)
    assert CORONAL_LETTERS == ("R", "L", "S", "I")
    assert cols.max() < coronal.shape[1] / 2 and rows.max() < coronal.shape[0] / 2  # screen left (R), top (S)


def test_sectors_command_reports_a_bad_map_and_finishes_the_rest(tmp_path, capsys):
    good = np.zeros((12, 12, 6), dtype=np.uint8)
    good[3:9, 3:9, 1:5] = 2
    good[5:7, 5:7, 1:5] = 3
    bad = good.copy()
    bad[0, 0, 0] = 7
    for name, arr in (("good", good), ("bad", bad)):
        sitk.WriteImage(sitk.GetImageFromArray(arr.transpose(2, 1, 0)), str(tmp_path / f"{name}.nii.gz"))
    code = main(["zones", "sectors", str(tmp_path / "bad.nii.gz"), str(tmp_path / "good.nii.gz"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and "bad.nii.gz" in err[0] and "[7]" in err[0]
    assert not (tmp_path / "out" / "bad_sectors.nii.gz").exists()
    assert (tmp_path / "out" / "good_sectors.nii.gz").exists() and (tmp_path / "out" / "good_sectors.json").exists()
