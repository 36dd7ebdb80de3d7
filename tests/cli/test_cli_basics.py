"""The ``medcl`` entry point: fast help, exit codes, one-line user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import medcl
from medcl.cli import main

MEDCL = [sys.executable, "-m", "medcl.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MEDCL, *args], capture_output=True, text=True, timeout=120)


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom medcl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'monai', 'lightning', 'SimpleITK', 'wfdb') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out
    for group in ("sepclr", "zones", "ecg", "data", "config", "bench", "demo", "info"):
        assert group in out, f"group {group} missing from medcl --help"


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"medcl {medcl.__version__}"


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_epochs: 3\n  bogus_key: 1\n")
    proc = _run("config", "validate", "sepclr", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("medcl: error: ") and str(bad) in lines[0] and "train.bogus_key: unknown key" in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path: Path) -> None:
    proc = _run("--debug", "config", "show", "sepclr", "--config", str(tmp_path / "missing.yaml"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "config file not found" in proc.stderr


def test_config_show_resolves_overrides() -> None:
    import yaml

    proc = _run("config", "show", "zones", "train.max_epochs=7", "train.seed=3")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["train"]["max_epochs"] == 7 and shown["train"]["seed"] == 3


def test_group_without_subcommand_prints_help_and_fails() -> None:
    proc = _run("sepclr")
    assert proc.returncode == 2 and "train" in proc.stdout


def test_info_json_lists_versions() -> None:
    import json

    proc = _run("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["versions"]["medcl"] == medcl.__version__ and "torch_threads" in info
