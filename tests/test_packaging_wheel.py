"""The built wheel installs ``pipelines/`` as ``medcl.pipelines`` and carries its data files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contents(tmp_path: Path) -> None:
    had_build_dir = (REPO / "build").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if not had_build_dir:  # setuptools stages the build in the source tree
        shutil.rmtree(REPO / "build", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("medcl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "medcl/pipelines/__init__.py" in names
    assert "medcl/pipelines/bench/__init__.py" in names
    assert "medcl/cli/__init__.py" in names and "medcl/cli/__main__.py" in names and "medcl/cli/config.py" in names
    assert not any(n.startswith("pipelines/") for n in names), "pipelines must not be a top-level package"
    assert any(n.startswith("medcl/resources/") and n.endswith(".csv") for n in names)
    assert any(n.startswith("medcl/explain/templates/") for n in names)
    assert "medcl/export/bundle_template/scripts/zones_bundle.py" in names  # copied into zones bundles
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "medcl = medcl.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
