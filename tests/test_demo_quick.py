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
        assert volumes
        sectors = nib.load(zones_dir / f"{row['case']}_sectors.nii.gz")
        assert sectors.shape == tuple(label.shape[1:])
        assert (zones_dir / f"{row['case']}_uncertainty.nii.gz").is_file()
        assert (zones_dir / f"{row['case']}_qc.png").stat().st_size > 1000


@pytest.mark.slow
def test_demo_ecg_outputs(demo_out: Path) -> None:
    results = json.loads((demo_out / "ecg" / "evaluation" / "results.json").read_text())
    assert 0.0 <= results["fused"]["macro"]["value"] <= 1.0
    predictions = json.loads((demo_out / "ecg" / "predictions" / "predictions.json").read_text())
    assert len(predictions["labels"]) == 71 and predictions["records"]
    index = (demo_out / "ecg" / "reports" / "index.html").read_text()
    pages = [p for p in (demo_out / "ecg" / "reports").glob("*.html") if p.name != "index.html"]
    assert pages and all(p.name in index for p in pages)
    assert "<script src=" not in pages[0].read_text()  # self-contained
