"""pipelines/bench/data.py: the benchmark runs end to end on a tiny folder and reports consistent fields."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


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
    assert ecg["meets_min_speedup"] == (ecg["speedup_cached_vs_read_ecg"] >= 20.0)
    assert "image" not in result and result["peak_rss_mb"] > 0
    assert list(tmp_path.iterdir()) == []  # the temporary work folder is removed
