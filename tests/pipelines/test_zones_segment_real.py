"""``segment`` on every real T2 scan (DICOM series folders, NRRD tra/sag/cor) with a random-weights checkpoint."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medcl.io.image import read_image
from medcl.pipelines.zones_segment import segment

torch.set_num_threads(2)
STUDY = "mri/prostatex-dicom/ProstateX-0000/07-07-2011"
SCANS = {
    "4.000000-t2tsetra-00702": f"{STUDY}/4.000000-t2tsetra-00702",
    "3.000000-t2tsesag-87368": f"{STUDY}/3.000000-t2tsesag-87368",
    "5.000000-t2tsecor-03471": f"{STUDY}/5.000000-t2tsecor-03471",
    "t2_tse_tra": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_tra.nrrd",
    "t2_tse_sag": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_sag.nrrd",
    "t2_tse_cor": "mri/prostatex-nrrd/ProstateX-0217/t2_tse_cor.nrrd",
}



@pytest.fixture(scope="module")
def real_run(shared_data, tmp_path_factory, random_zones_checkpoint):
    out = tmp_path_factory.mktemp("real")
    inputs = [shared_data / p for p in SCANS.values()] + [shared_data / STUDY]  # the study folder: 4 series
    ckpt = random_zones_checkpoint(out / "random.ckpt", "baseline")
    # a small ROI and no TTA keep this fast (TTA and the ROI are checked on phantoms)
    rows = segment(inputs, ckpt, out / "seg", tta=False, device="cpu", roi_mm=(48.0, 48.0, 48.0))
    return shared_data, out / "seg", {r["case"]: r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(SCANS))
def test_real_scan_outputs_sit_on_the_input_grid(real_run, case):
    data, out, rows = real_run
    assert rows[case]["status"] == "ok", rows[case]["error"]
    scan = read_image(data / SCANS[case])
    zones = nib.load(out / f"{case}_zones.nii.gz")
    assert zones.shape == tuple(scan.shape[1:])
    assert np.allclose(zones.affine, np.asarray(scan.affine), atol=1e-4)
    labels = np.asarray(zones.dataobj)
    assert labels.max() <= 4
    vol = json.loads((out / f"{case}_volumes.json").read_text())
    voxel_ml = float(np.prod(zones.header.get_zooms()[:3])) / 1000.0
    assert vol["gland"] == pytest.approx(np.count_nonzero(labels) * voxel_ml, rel=1e-6)
    assert vol["zones"]["PZ"] == pytest.approx(np.count_nonzero(labels == 1) * voxel_ml, rel=1e-6)
    sectors = nib.load(out / f"{case}_sectors.nii.gz")
    assert np.allclose(sectors.affine, zones.affine)
    assert ((np.asarray(sectors.dataobj) > 0) == (labels > 0)).all()
    assert (out / f"{case}_qc.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_real_batch_reports_the_multi_series_folder_and_finishes_the_rest(real_run):
    _, out, rows = real_run
    assert rows["07-07-2011"]["status"] == "error"
    assert "holds 4 DICOM series" in rows["07-07-2011"]["error"]
    assert sum(r["status"] == "ok" for r in rows.values()) == len(SCANS)
    assert any(r["gland_ml"] > 0 for r in rows.values() if r["status"] == "ok")
