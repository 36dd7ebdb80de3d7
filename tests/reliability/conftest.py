"""The reliability corpus: bad, faulty and hostile inputs run through the real ``medcl`` CLI.

Each case runs ``medcl ...`` (in process through :func:`medcl.cli.main`, or as a subprocess when a
fault needs a real process to kill) on inputs derived at test time from the real files in
``../shared/data`` (skipping cleanly when absent) or from the package's synthetic generators, and
asserts the exact outcome: exit code, the one-line message naming the file or option, no traceback,
no partial or leftover files. Tiny checkpoints are built once per session from untrained networks.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MEDCL = [sys.executable, "-c", "import sys; from medcl.cli import main; sys.exit(main())"]


@dataclass
class Run:
    """What one ``medcl`` call left: exit code, stdout, stderr and an escaped exception (a traceback)."""

    code: int
    out: str
    err: str
    exc: str = ""

    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


def run_cli(*argv: str | os.PathLike, env: dict[str, str] | None = None) -> Run:
    """``medcl ARGV`` in process; an exception escaping ``main`` is recorded as a traceback."""
    from medcl.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    exc = ""
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as stop:  # argparse
                code = stop.code if isinstance(stop.code, int) else 2
            except Exception:  # noqa: BLE001 - the corpus records it as a traceback
                exc = traceback.format_exc()
                code = -1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(int(code or 0), out.getvalue(), err.getvalue(), exc)


def assert_no_traceback(run: Run) -> None:
    assert not run.exc, f"traceback escaped medcl:\n{run.exc[-1500:]}"
    assert "Traceback" not in run.err and "Traceback" not in run.out, run.err[-1500:]


def assert_user_error(run: Run, *names: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, and one ``medcl: error:`` line (or argparse's) naming every ``names``."""
    assert_no_traceback(run)
    assert run.code == code, f"exit {run.code}, expected {code}; stderr: {run.err[-800:]} stdout: {run.out[-400:]}"
    lines = [ln for ln in run.error_lines() if "error:" in ln]
    assert lines, f"no error line on stderr: {run.err[-800:]}"
    hit = [ln for ln in lines if all(n in ln for n in names)]
    assert hit, f"no error line names {names}: {lines}"
    if code == 2:
        assert len(lines) == 1, f"several error lines: {lines}"
    assert "error" not in run.out.lower(), f"error text on stdout: {run.out[-400:]}"
    return hit[0]


def assert_ok(run: Run) -> None:
    assert_no_traceback(run)
    assert run.code == 0, f"exit {run.code}; stderr: {run.err[-1200:]}"


def leftovers(folder: Path) -> list[str]:
    """Temporary/partial files a run must never leave: hidden temp names and ``.medcl-tmp-`` files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".") or ".medcl-tmp-" in p.name or p.name.endswith(".partial"))


# ----------------------------------------------------------------------------------------- inputs


def crop_real_t2(shared: Path, out: Path, name: str = "t2.nii.gz", case: str = "001") -> Path:
    """A 96x96x12 centre crop of a real Prostate158 T2 (keeps its real geometry), written to ``out``."""
    import nibabel as nib

    img = nib.load(shared / "mri" / "prostate158-sample" / case / "t2.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)
    x0, y0, z0 = (np.array(data.shape) - (96, 96, 12)) // 2
    crop = data[x0 : x0 + 96, y0 : y0 + 96, z0 : z0 + 12]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.array([x0, y0, z0]) + img.affine[:3, 3]
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(crop, affine), str(out / name) if out.is_dir() else str(out))
    return out / name if out.is_dir() else out


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None, pixdim: tuple | None = None) -> Path:
    """Write a NIfTI; ``pixdim`` patches the raw header spacing (qform/sform codes 0), e.g. zeros as a broken
    converter writes them (nibabel and ITK both "fix" such headers when they read them)."""
    import gzip
    import struct

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data), np.diag([0.5, 0.5, 3.0, 1.0]) if affine is None else affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    if pixdim is None:
        nib.save(img, str(path))
        return path
    img.header.set_sform(None, code=0)
    img.header.set_qform(None, code=0)
    raw = bytearray(img.header.binaryblock) + b"\0" * 4 + np.asarray(data).astype(img.get_data_dtype()).tobytes("F")
    raw[80:92] = struct.pack("<3f", *pixdim)
    raw[108:112] = struct.pack("<f", 352.0)  # vox_offset
    path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return path


# ----------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="session")
def zones_checkpoint(tmp_path_factory) -> Path:
    """A tiny dual-path zones checkpoint with seeded random weights (no training)."""
    import torch

    from medcl.data.zones_labels import LABEL_MAP
    from medcl.nets.dualpath import build_zones_net

    torch.manual_seed(0)
    model = {"arch": "dualpath", "filters": [4, 8, 8, 8]}
    net = build_zones_net(model)
    payload = {"family": "zones", "config": {"model": model, "data": {"pixdim": [1.0, 1.0, 3.0]}},
               "label_map": LABEL_MAP, "state_dict": net.state_dict(), "versions": {}, "extra": {}}
    path = tmp_path_factory.mktemp("zones_ckpt") / "zones.ckpt"
    torch.save({"medcl": payload}, path)
    return path


def tiny_ecg_payload(cfg_overrides: list[str] = ()) -> dict:
    """The ``"medcl"`` entry of a tiny untrained ProtoECGNet (configs/ecg/tiny.yaml)."""
    import torch

    from medcl.config import load_config
    from medcl.data.ptbxl import packaged_statements
    from medcl.pipelines.ecg import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups

    torch.manual_seed(0)
    cfg = load_config(ECGConfig, REPO / "configs" / "ecg" / "tiny.yaml", list(cfg_overrides))
    labels = packaged_statements()["code"].tolist()
    net = build_net(cfg, label_groups(labels), len(labels))
    return {"family": "ecg", "config": cfg.model_dump(mode="json"), "label_map": {c: i for i, c in enumerate(labels)},
            "state_dict": net.state_dict(), "versions": {},
            "extra": {"head": "fusion", "thresholds": [0.5] * len(labels)}}


@pytest.fixture(scope="session")
def ecg_checkpoint(tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("ecg_ckpt") / "ecg.ckpt"
    torch.save({"medcl": tiny_ecg_payload()}, path)
    return path


class _System:
    """Pickles as a call of ``os.system``: what a hostile checkpoint holds (never executed here)."""

    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture(scope="session")
def hostile_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint-looking file whose unpickling would run ``os.system``."""
    import pickle

    path = tmp_path_factory.mktemp("hostile") / "hostile.ckpt"
    with path.open("wb") as handle:
        pickle.dump({"medcl": {"family": "zones", "state_dict": {}}, "payload": _System()}, handle, protocol=2)
    return path


@pytest.fixture(scope="session")
def real(shared_data) -> Path:
    return shared_data


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
