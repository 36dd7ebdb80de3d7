"""``medcl demo --quick`` end to end: every listed output exists and is valid."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "medcl.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "medcl demo finished" in proc.stdout
    return out


@pytest.mark.slow
def test_demo_checkpoints_load_for_their_family(demo_out: Path) -> None:
    from medcl.engine import load_model_checkpoint

    for family in ("sepclr", "zones", "ecg"):
        ckpt = load_model_checkpoint(demo_out / "checkpoints" / f"{family}.ckpt", family)
        assert ckpt.state_dict and ckpt.config["train"]["max_epochs"] >= 1
    summary = json.loads((demo_out / "demo_summary.json").read_text())
    assert {f: s["status"] for f, s in summary["families"].items()} == {"sepclr": "ok", "zones": "ok", "ecg": "ok"}


@pytest.mark.slow
def test_demo_sepclr_outputs(demo_out: Path) -> None:
    evaluation = json.loads((demo_out / "sepclr" / "evaluation.json").read_text())
    assert set(evaluation) >= {"probes", "bg_tg", "salient_norm"}
    for probe in evaluation["probes"]:
        assert probe["space"] in ("common", "salient", "simclr") and 0 <= probe["chance"] <= 1
    # The cohort's shape and scale are shared by both groups, so the common space must carry them
    # (seeded run: shape 1.0 vs chance 0.33, scale R^2 0.87); an untrained encoder sits near chance.
    common = {(p["attribute"], p["metric"]): p for p in evaluation["probes"]
              if p["space"] == "common" and p["rows"] == "all"}
    shape = common[("shape", "balanced_accuracy")]
    assert shape["score"] >= shape["chance"] + 0.3
    assert common[("scale", "r2")]["score"] >= 0.5
    header = (demo_out / "sepclr" / "embeddings.csv").read_text().splitlines()[0].split(",")
    assert "c_0" in header and "s_0" in header and "group" in header
    assert list((demo_out / "sepclr").rglob("*.png"))
    overlays = list((demo_out / "sepclr" / "saliency").rglob("*.nii.gz"))
    assert overlays and np.isfinite(np.asarray(nib.load(overlays[0]).dataobj)).all()


@pytest.mark.slow
def test_demo_zones_outputs_on_input_geometry(demo_out: Path) -> None:
    from medcl.io.image import read_image

    with open(demo_out / "zones" / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(row["status"] == "ok" for row in rows)
    for row in rows:
        zones_dir = demo_out / "zones"
        label = read_image(zones_dir / f"{row['case']}_zones.nii.gz")
        scan = read_image(row["input"])
        assert label.shape == scan.shape
        np.testing.assert_allclose(np.asarray(label.affine), np.asarray(scan.affine), atol=1e-4)
        assert set(np.unique(np.asarray(label))) <= {0, 1, 2, 3, 4}
        volumes = json.loads((zones_dir / f"{row['case']}_volumes.json").read_text())
        voxel_ml = abs(np.linalg.det(np.asarray(label.affine)[:3, :3])) / 1000
        counts = np.bincount(np.asarray(label).astype(np.int64).ravel(), minlength=5)
        assert volumes["voxels"] == {"PZ": counts[1], "TZ": counts[2], "DPU": counts[3], "AFS": counts[4]}
        assert volumes["voxel_volume_ml"] == pytest.approx(voxel_ml, rel=1e-5)
        assert volumes["gland"] == pytest.approx(counts[1:].sum() * voxel_ml, rel=1e-5)
        assert float(row["gland_ml"]) == pytest.approx(volumes["gland"], rel=1e-3)
        sectors = nib.load(zones_dir / f"{row['case']}_sectors.nii.gz")
        assert sectors.shape == tuple(label.shape[1:])
        assert (zones_dir / f"{row['case']}_uncertainty.nii.gz").is_file()
        assert (zones_dir / f"{row['case']}_qc.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_ecg_outputs(demo_out: Path) -> None:
    results = json.loads((demo_out / "ecg" / "evaluation" / "results.json").read_text())
    # The synthetic records carry their labels in the signal, so the briefly trained model must beat
    # chance (0.5) with its whole 95% interval (seeded run: 0.73, CI 0.64-0.80).
    macro = results["fused"]["macro"]
    assert macro["value"] >= 0.6 and macro["ci"][0] > 0.5
    assert all(v is None or 0.0 <= v <= 1.0 for v in results["fused"]["per_class"].values())
    predictions = json.loads((demo_out / "ecg" / "predictions" / "predictions.json").read_text())
    assert len(predictions["labels"]) == 71 and predictions["records"]
    index = (demo_out / "ecg" / "reports" / "index.html").read_text()
    pages = [p for p in (demo_out / "ecg" / "reports").glob("*.html") if p.name != "index.html"]
    assert pages and all(p.name in index for p in pages)
    assert "<script src=" not in pages[0].read_text()  # self-contained
