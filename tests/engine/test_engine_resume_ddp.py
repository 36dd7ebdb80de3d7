"""Kill-and-resume and 2-process DDP (gloo, CPU) runs of the shared engine give the same weights."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).with_name("engine_tiny_run.py")


def _run(args: list[str], env_extra: dict | None = None, torchrun: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
    else:
        cmd = [sys.executable]
    return subprocess.Popen(cmd + [str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "final.pt", weights_only=True)


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    _finish(_run(["--out", str(full)]))

    proc = _run(["--out", str(killed)], {"MEDCL_TEST_PAUSE_EPOCH": "2"})
    deadline = time.time() + 180
    while not (killed / "paused").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "run never reached the pause point"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "final.pt").exists()
    last = killed / "checkpoints" / "last.ckpt"
    assert last.is_file()
    assert torch.load(last, weights_only=True)["epoch"] == 1  # epochs 0 and 1 done

    _finish(_run(["--out", str(killed), "--resume", str(last)]))
    a, b = _weights(full), _weights(killed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{key} differs after resume")


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--shuffle", "0", "--dropout", "0", "--epochs", "2"]
    _finish(_run(["--out", str(one), "--batch", "8", *common]))
    # Same global batch: 2 ranks x 4 samples; DistributedSampler interleaves so each step sees 0..7.
    _finish(_run(["--out", str(two), "--batch", "4", "--devices", "2", *common], torchrun=2))
    a, b = _weights(one), _weights(two)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{key}: DDP differs")
    # and training really moved the weights
    from engine_tiny_run import TinyModule  # noqa: PLC0415

    torch.manual_seed(0)
    assert any(not torch.equal(a[k], v) for k, v in TinyModule().net.state_dict().items())
    shutil.rmtree(tmp_path, ignore_errors=True)
