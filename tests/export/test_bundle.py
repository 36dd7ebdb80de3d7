"""Zones MONAI bundle: MONAI's own runner (medcl import blocked) against ``medcl zones segment`` on a real scan.

The network is a tiny seeded random-weight dual-path net whose output layers are scaled by 20, so
that its softmax is decisive: with near-uniform random outputs, float-level differences between two
engines flip near-tied voxels and the largest-component/gap-filling post-processing amplifies them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medcl.errors import MedclError


def _scan(shared_data: Path) -> Path:
    path = shared_data / "mri" / "prostate158-sample" / "001" / "t2.nii.gz"
    if not path.is_file():
        pytest.skip("real Prostate158 scan not available")
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, random_zones_checkpoint):
    from medcl.pipelines.export import export

    tmp = tmp_path_factory.mktemp("zones-bundle")
    ckpt = random_zones_checkpoint(tmp / "random.ckpt", "dualpath")
    raw = torch.load(ckpt, weights_only=True)
    sd = raw["medcl"]["state_dict"]
    for key in [k for k in sd if "output_block" in k]:
        sd[key] = sd[key] * 20.0
    torch.save(raw, ckpt)
    export(ckpt, "bundle", tmp / "bundle")
    return ckpt, tmp / "bundle"


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return 2.0 * float((x & y).sum()) / max(float(x.sum() + y.sum()), 1.0)


def test_bundle_layout_and_model_card(bundle):
    _, root = bundle
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background", "1": "PZ", "2": "TZ", "3": "DPU", "4": "AFS"}
    assert meta["medcl"]["family"] == "zones" and "SYNTHETIC" in meta["intended_use"]
    assert "SYNTHETIC" in (root / "docs" / "README.md").read_text().upper()
    import re

    scripts = "".join(p.read_text() for p in (root / "scripts").rglob("*.py"))
    assert not re.search(r"^\s*(from|import) medcl", scripts, flags=re.M)
    net = torch.jit.load(str(root / "models" / "model.ts"))
    out = net(torch.rand(2, 1, 16, 24, 6))
    assert out.shape == (2, 5, 16, 24, 6)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 16, 24, 6))


def test_monai_bundle_run_agrees_with_medcl_segment(bundle, shared_data, tmp_path):
    from medcl.cli import main

    ckpt, root = bundle
    scan = _scan(shared_data)
    data = tmp_path / "in"
    data.mkdir()
    (data / "t2.nii.gz").symlink_to(scan)
    block = tmp_path / "block"  # the bundle must run without medcl: importing it fails in the child
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['medcl'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(block), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "inference.json"),
         "--bundle_root", str(root), "--dataset_dir", str(data), "--output_dir", str(tmp_path / "bundle_out")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert main(["zones", "segment", str(scan), "--checkpoint", str(ckpt), "--out", str(tmp_path / "medcl"),
                 "--device", "cpu", "--roi", "center"]) == 0  # the bundle crops the centred box
    ref_img, got_img = nib.load(tmp_path / "medcl" / "t2_zones.nii.gz"), nib.load(tmp_path / "bundle_out" / "t2_zones.nii.gz")
    assert got_img.shape == nib.load(scan).shape and np.allclose(got_img.affine, nib.load(scan).affine, atol=1e-4)
    ref, got = np.asarray(ref_img.dataobj), np.asarray(got_img.dataobj)
    present = [int(z) for z in np.unique(ref) if z > 0]
    assert present
    for zone in present:
        assert _dice(got, ref, zone) >= 0.98, (zone, _dice(got, ref, zone))


def test_info_checks_bundle_model_file(bundle, tmp_path, capsys):
    import shutil

    from medcl.cli import main

    _, root = bundle
    assert main(["info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["medcl"]["family"] == "zones"
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    blob = bytearray((copy / "models" / "model.ts").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (copy / "models" / "model.ts").write_bytes(bytes(blob))
    assert main(["info", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.ts: does not match its recorded SHA-256" in err[0]
    with pytest.raises(MedclError, match="not a medcl bundle"):
        from medcl.export.bundle import read_bundle_metadata

        (copy / "models" / "model.ts").unlink()
        read_bundle_metadata(copy)
