"""pipelines/bench/data.py: the benchmark runs end to end on a tiny folder and reports consistent fields."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def test_bench_module_top_level_is_light(repo_root: Path) -> None:
    code = "import sys, medcl.pipelines.bench.data; print(json.dumps(['torch' in sys.modules, 'wfdb' in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]


def test_bench_data_small_run(tmp_path: Path) -> None:
    from medcl.pipelines.bench import data

    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    args = parser.parse_args(["--n", "20", "--wfdb-sample", "5", "--work-dir", str(tmp_path), "--skip-image"])
    result = data.run(args)
    ecg = result["ecg"]
    assert ecg["records"] == 20 and ecg["array_shape"] == [20, 12, 1000] and ecg["first_load_workers"] == 1
    assert ecg["cache_mb"] == round(20 * 12 * 1000 * 4 / 2**20, 1)
    reference = ecg["reference_read_filter_records_per_s"]
    assert len(reference["runs"]) == 3 and reference["min"] <= reference["median"] <= reference["max"]
    cached = ecg["cached_load_records_per_s"]["median"]
    assert ecg["speedup_cached_vs_reference"] == pytest.approx(cached / reference["median"], abs=0.06)
    assert ecg["meets_min_speedup"] == (ecg["speedup_cached_vs_reference"] >= 20.0)
    assert [r["unit"] for r in result["table"]] == ["records/s", "records/s"]
    assert "image" not in result and result["peak_rss_mb"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary work folder is removed


def test_reference_loader_does_the_same_work_as_read_ecg(tmp_path: Path) -> None:
    """The bench's reference side (wfdb + high-pass, no medcl code) gives medcl's signal on a
    100 Hz record (no resampling): the two sides of the ratio do equal work."""
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.io.ecg import read_ecg
    from medcl.pipelines.bench.data import reference_read_filter

    write_dataset(tmp_path, 2, seed=0)
    record = sorted(tmp_path.rglob("*_lr.hea"))[0].with_suffix("")
    reference = reference_read_filter(str(record))  # (samples, leads)
    ours = read_ecg(record, fs=100, n_samples=1000)
    ours = np.asarray(getattr(ours, "signal", ours))
    assert reference.shape == (1000, 12) and ours.shape[-2:] == (12, 1000)
    inner = slice(100, 900)  # the two filters pad the ends differently
    np.testing.assert_allclose(ours.reshape(12, 1000)[:, inner], reference.T[:, inner], atol=2e-3 * np.abs(reference).max())
