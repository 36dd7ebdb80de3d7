"""Corpus: killed runs (SIGKILL mid-write, mid-cache-build, mid-training), exact resume, portable checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from conftest import REPO, assert_ok, leftovers, run_cli

CINC = Path("ecg/cinc2021-sample")
TINY_ECG = ["train.accelerator=cpu", "train.loggers=[]", "train.deterministic=true", "train.num_workers=0"]


def _python(code: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            cwd=REPO, **kw)


def _records(real: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted((real / CINC).glob("HR0600[0-4].*")):
        shutil.copy(f, out / f.name)
    return out


# ----------------------------------------------------------------------------------------- mid-write


def test_fault_sigkill_mid_atomic_write_is_swept_by_the_next_run(real, ecg_checkpoint, tmp_path):
    out = tmp_path / "out"
    code = ("import os, signal; from medcl.utils import atomic_write_path\n"
            f"with atomic_write_path({str(out / 'predictions.json')!r}) as tmp:\n"
            "    tmp.write_text('{\"half\": ')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert _python(code).wait(60) == -signal.SIGKILL
    assert leftovers(out), "the killed writer left no temporary file (nothing to sweep)"
    run = run_cli("ecg", "predict", real / CINC / "HR06000.hea", "--checkpoint", ecg_checkpoint, "--out", out)
    assert_ok(run)
    assert leftovers(out) == []


def test_fault_sigkill_mid_segment_is_swept(real, zones_checkpoint, tmp_path):
    from conftest import crop_real_t2

    img = crop_real_t2(real, tmp_path)
    out = tmp_path / "out"
    code = ("import os, signal; from medcl.utils import atomic_write_path\n"
            f"with atomic_write_path({str(out / 't2_zones.nii.gz')!r}) as tmp:\n"
            "    tmp.write_bytes(b'\\x1f\\x8b half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert _python(code).wait(60) == -signal.SIGKILL
    run = run_cli("zones", "segment", img, "--checkpoint", zones_checkpoint, "--out", out, "--no-tta", "--roi", "center")
    assert_ok(run)
    assert leftovers(out) == []
    assert (out / "t2_zones.nii.gz").stat().st_size > 100


# ----------------------------------------------------------------------------------------- mid-cache


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_fault_sigkill_mid_cache_build(real, tmp_path):
    """Workers die with their parent; the partial .npy is never reused and is gone after the next build."""
    from medcl.data.ecg_cache import DecodeParams, build_cache
    from medcl.io.ecg import read_ecg

    folder = _records(real, tmp_path / "rec")
    cache = tmp_path / "cache"
    script = tmp_path / "build.py"
    script.write_text(
        "import time\nfrom medcl.data import ecg_cache\n"
        "from medcl.data.ecg_cache import DecodeParams, build_cache\n"
        "ecg_cache.MIN_RECORDS_PER_WORKER = 1\n"
        "real_decode = ecg_cache._decode_rows\n"
        f"recs = sorted(str(p.with_suffix('')) for p in __import__('pathlib').Path({str(folder)!r}).glob('*.hea'))\n"
        "if __name__ == '__main__':\n"
        f"    build_cache(recs * 40, DecodeParams(fs=100, n_samples=1000), {str(cache)!r}, 'corpus', workers=2, chunk=4)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline, kids = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None:
        kids = [k for k in _children(proc.pid) if "spawn" in " ".join(k.cmdline())]
        if len(kids) >= 2 and list(cache.glob("*.npy")):
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the build finished before it could be killed (machine too fast)")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, f"decode workers outlived their killed parent: {[p.pid for p in alive]}"
    recs = sorted(str(p.with_suffix("")) for p in folder.glob("*.hea"))
    built = build_cache(recs, DecodeParams(fs=100, n_samples=1000), cache, "corpus", workers=1)
    assert np.array_equal(built.array[2], read_ecg(recs[2], fs=100, n_samples=1000).signal)
    assert sorted(p.name for p in cache.iterdir()) == sorted([built.npy.name, built.npy.with_suffix(".json").name])


def test_fault_partial_cache_without_index_is_not_reused(real, tmp_path):
    from medcl.data.ecg_cache import DecodeParams, build_cache, cache_key
    from medcl.io.ecg import read_ecg

    folder = _records(real, tmp_path / "rec")
    recs = sorted(str(p.with_suffix("")) for p in folder.glob("*.hea"))
    params = DecodeParams(fs=100, n_samples=1000)
    cache = tmp_path / "cache"
    cache.mkdir()
    stem = f"corpus-{cache_key(recs, params)}"
    np.save(cache / f"{stem}.npy", np.zeros((len(recs), 12, 1000), np.float32))  # a build killed before its index
    built = build_cache(recs, params, cache, "corpus", workers=1)
    assert np.array_equal(built.array[0], read_ecg(recs[0], fs=100, n_samples=1000).signal)


# ----------------------------------------------------------------------------------------- training, resume


@pytest.fixture(scope="module")
def synth_ecg(tmp_path_factory) -> Path:
    from medcl.data.synthetic.ecg import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth_ecg") / "ptbxl", 60, 0).parent


def _ecg_train(root: Path, out: Path, *extra: str, env=None):
    extra = tuple(map(str, extra))
    options = [a for i, a in enumerate(extra) if a.startswith("--") or (i and extra[i - 1].startswith("--"))]
    overrides = [a for a in extra if a not in options]
    return run_cli("ecg", "train", "--config", REPO / "configs/ecg/tiny.yaml", "--out", out, *options,
                   f"data.root={root}", *TINY_ECG, *overrides, env=env)


@pytest.fixture(scope="module")
def ecg_run(synth_ecg, tmp_path_factory):
    base = tmp_path_factory.mktemp("ecg_run")
    cache = base / "cache"
    run = _ecg_train(synth_ecg, base / "run", "train.max_epochs=1", "optim.head_epochs=1",
                     env={"MEDCL_CACHE_DIR": str(cache)})
    assert_ok(run)
    return base, run


def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _strings(v)]
    return [obj] if isinstance(obj, str) else []


def test_ckpt_ecg_is_portable(ecg_run, synth_ecg):
    base, _ = ecg_run
    from medcl.engine.checkpoint import find_model

    ckpt = torch.load(find_model(base / "run"), map_location="cpu", weights_only=True)
    absolute = [s for s in _strings(ckpt["medcl"]["config"]) if s.startswith("/")]
    assert absolute == [], absolute


def test_ckpt_ecg_evaluate_caches_only_under_medcl_cache_dir(ecg_run, synth_ecg, tmp_path):
    base, _ = ecg_run
    from medcl.engine.checkpoint import find_model

    ckpt = torch.load(find_model(base / "run"), map_location="cpu", weights_only=True)
    foreign = tmp_path / "other-machine" / "cache"
    ckpt["medcl"]["config"]["data"]["cache_dir"] = str(foreign)
    moved = tmp_path / "moved.ckpt"
    torch.save(ckpt, moved)
    mine = tmp_path / "mine"
    run = run_cli("ecg", "evaluate", "--checkpoint", moved, "--data", synth_ecg, "--out", tmp_path / "ev",
                  "--bootstrap", "5", env={"MEDCL_CACHE_DIR": str(mine)})
    assert_ok(run)
    assert not foreign.exists(), "ecg evaluate wrote into the cache_dir stored in the checkpoint"
    assert list(mine.rglob("*.npy"))


def _kill_after(argv: list[str], last: Path, env: dict) -> None:
    """``medcl ARGV`` in a subprocess, SIGKILLed as soon as ``last`` (a last.ckpt) is on disk."""
    cmd = "import sys; from medcl.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", cmd, *map(str, argv)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not last.is_file():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert last.is_file(), "the run ended before its first checkpoint"


def _worst_weight_gap(full: Path, cut: Path, stage: str | None = None) -> float:
    from medcl.engine.checkpoint import checkpoint_path, find_model

    def weights(run: Path) -> dict:
        path = checkpoint_path(run, "last", stage) if stage else find_model(run)
        return torch.load(path, map_location="cpu", weights_only=True)["medcl"]["state_dict"]

    a, b = weights(full), weights(cut)
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.mark.parametrize("stages", ["joint", "joint,project,fusion"])
def test_fault_sigkill_mid_training_then_exact_resume(stages, synth_ecg, tmp_path):
    """Killed after the first last.ckpt, resumed: the chain ends bit-identical to an uninterrupted run."""
    from medcl.engine.checkpoint import checkpoint_dir

    env = {"MEDCL_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--stages", stages, "train.max_epochs=3", "optim.head_epochs=2"]
    assert_ok(_ecg_train(synth_ecg, tmp_path / "full", *args, env=env))
    last = checkpoint_dir(tmp_path / "cut", "joint") / "last.ckpt"
    _kill_after(["ecg", "train", "--config", REPO / "configs/ecg/tiny.yaml", "--out", tmp_path / "cut",
                 "--stages", stages, f"data.root={synth_ecg}", *TINY_ECG, *args[2:]], last, env)
    assert_ok(_ecg_train(synth_ecg, tmp_path / "cut", *args, "--resume", last, env=env))
    worst = _worst_weight_gap(tmp_path / "full", tmp_path / "cut")
    assert worst == 0.0, f"resumed weights differ from the uninterrupted run by up to {worst}"


TINY_ZONES = ["train.max_epochs=3", "train.check_val_every_n_epoch=1", "train.progress_bar=false",
              "train.accelerator=cpu", "train.deterministic=true", "train.num_workers=0", "train.loggers=[]",
              "data.synthetic_cases=4", "data.synthetic_unlabeled=2", "stage2.epochs=3", "stage2.rampup_epochs=0.5"]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_fault_sigkill_mid_zones_training_then_exact_resume(stage, tmp_path):
    """Zones killed after the first last.ckpt of stage 1 (or 2), resumed: all weights equal the uninterrupted run."""
    from medcl.engine.checkpoint import checkpoint_dir

    argv = ["zones", "train", "--config", REPO / "configs/zones/synthetic.yaml"]
    assert_ok(run_cli(*argv, "--out", tmp_path / "full", *TINY_ZONES))
    last = checkpoint_dir(tmp_path / "cut", stage) / "last.ckpt"
    _kill_after([*argv, "--out", tmp_path / "cut", *TINY_ZONES], last, {})
    assert_ok(run_cli(*argv, "--out", tmp_path / "cut", "--resume", last, *TINY_ZONES))
    for done in ("stage1", "stage2"):
        worst = _worst_weight_gap(tmp_path / "full", tmp_path / "cut", done)
        assert worst == 0.0, f"{done}: resumed weights differ from the uninterrupted run by up to {worst}"


def test_fault_sigkill_mid_sepclr_training_then_exact_resume(tmp_path):
    """SepCLR killed after its first last.ckpt (epoch 1 of 3), resumed: all weights equal the uninterrupted run."""
    from medcl.data.synthetic.texdigits import write_dataset
    from medcl.engine.checkpoint import checkpoint_dir

    manifest = write_dataset(tmp_path / "data", 16, seed=0)
    argv = ["sepclr", "train", "--config", REPO / "configs/sepclr/texdigits.yaml", f"data.manifest={manifest}",
            "model.depth=10", "model.width=4", "model.cifar_stem=false", "data.batch_size=8", "train.max_epochs=3",
            "train.accelerator=cpu", "train.precision=32-true", "train.loggers=[]", "train.deterministic=true",
            "train.num_workers=0"]
    assert_ok(run_cli(*argv, "--out", tmp_path / "full"))
    last = checkpoint_dir(tmp_path / "cut") / "last.ckpt"
    _kill_after([*argv, "--out", tmp_path / "cut"], last, {})
    assert_ok(run_cli(*argv, "--out", tmp_path / "cut", "--resume", last))
    worst = _worst_weight_gap(tmp_path / "full", tmp_path / "cut", None)
    assert worst == 0.0, f"resumed weights differ from the uninterrupted run by up to {worst}"


def test_ckpt_hostile_ecg_train_resume(hostile_checkpoint, synth_ecg, tmp_path):
    from conftest import assert_user_error

    run = _ecg_train(synth_ecg, tmp_path / "r", "--resume", str(hostile_checkpoint),
                     env={"MEDCL_CACHE_DIR": str(tmp_path / "cache")})
    line = assert_user_error(run, "hostile.ckpt", "refused")
    assert "posix.system" in line and "will likely succeed" not in run.err and "GPU available" not in run.err


# ----------------------------------------------------------------------------------------- Ctrl-C, two writers


def test_fault_sigint_mid_segment_and_a_second_writer(real, zones_checkpoint, tmp_path):
    """Ctrl-C while ``zones segment`` writes its second case: exit 130 with one line, no temp files, no
    half-written case (each case has all its outputs or none); a second run into the same --out meanwhile
    is refused (one line, exit 2) instead of interleaving; ``--continue`` then finishes the batch."""
    from conftest import MEDCL, assert_user_error, crop_real_t2

    from medcl.pipelines.zones_segment import OUTPUT_SUFFIXES

    scans = tmp_path / "in"
    scans.mkdir()
    for i, case in enumerate(("001", "002", "020")):
        crop_real_t2(real, scans, f"s{i}.nii.gz", case)
    out = tmp_path / "out"
    args = ["zones", "segment", scans, "--checkpoint", zones_checkpoint, "--out", out, "--no-tta", "--roi", "center"]
    first = subprocess.Popen([*MEDCL, *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "s1_zones.nii.gz").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "segment finished before it could be interrupted"
    second = run_cli(*args)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert_user_error(second, str(out), "another medcl run")
    assert first.returncode == 130, err[-800:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "medcl: interrupted", err[-800:]
    assert leftovers(out) == []
    for case in ("s0", "s1", "s2"):
        present = [(out / f"{case}{s}").is_file() for s in OUTPUT_SUFFIXES]
        assert all(present) or not any(present), f"half-written case {case}: {present}"
    assert all((out / f"s0{s}").is_file() for s in OUTPUT_SUFFIXES)
    assert_ok(run_cli(*args, "--continue"))
    assert all((out / f"s{i}{s}").is_file() for i in range(3) for s in OUTPUT_SUFFIXES)
    assert leftovers(out) == []
