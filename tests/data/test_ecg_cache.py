"""medcl.data.ecg_cache and medcl.data.wfdb_folder: memmap cache, keys, rebuilds, parallel build."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medcl.data.ecg_cache import DecodeParams, build_cache, cache_key
from medcl.data.synthetic.ecg import write_dataset
from medcl.data.wfdb_folder import WFDBFolder
from medcl.errors import MedclError
from medcl.io.ecg import read_ecg

PARAMS = DecodeParams(fs=100, n_samples=1000, highpass=0.5)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = write_dataset(tmp_path_factory.mktemp("cache_src"), 10, seed=7).parent
    db = pd.read_csv(root / "ptbxl_database.csv")
    return [root / f for f in db.filename_lr]


def test_cache_equals_direct_decoding_and_is_reused(records: list[Path], tmp_path: Path) -> None:
    cache = build_cache(records, PARAMS, tmp_path, "t", workers=1)
    assert cache.array.shape == (10, 12, 1000) and cache.array.dtype == np.float32
    for i in (0, 9):
        np.testing.assert_array_equal(cache.array[i], read_ecg(records[i], fs=100, n_samples=1000).signal)
    stamp = cache.npy.stat().st_mtime_ns
    again = build_cache(records, PARAMS, tmp_path, "t", workers=1)
    assert again.npy == cache.npy and again.npy.stat().st_mtime_ns == stamp
    assert again.row(str(records[3])) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_dataset_pickles_by_file_name(records: list[Path], tmp_path: Path) -> None:
    import pickle

    from medcl.data.wfdb_folder import ECGArrayDataset

    cache = build_cache(records, PARAMS, tmp_path, "t", workers=1)
    labels = np.eye(10, 3, dtype=np.float32)
    ds = ECGArrayDataset(cache.array, labels, rows=np.array([4, 1]))
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000  # the 480 kB of signals are not copied
    back = pickle.loads(blob)
    sig, lab = back[1]
    np.testing.assert_array_equal(sig.numpy(), cache.array[1])
    np.testing.assert_array_equal(lab.numpy(), labels[1])
    assert len(back) == 2


def test_changed_input_or_parameter_rebuilds(records: list[Path], tmp_path: Path) -> None:
    key = cache_key(records, PARAMS)
    assert cache_key(records, DecodeParams(fs=100, n_samples=1000, highpass=None)) != key
    assert cache_key(records[::-1], PARAMS) != key
    local = tmp_path / "recs"
    local.mkdir()
    for r in records[:3]:
        for ext in (".hea", ".dat"):
            shutil.copy(r.with_suffix(ext), local / (r.name + ext))
    copies = [local / r.name for r in records[:3]]
    first = build_cache(copies, PARAMS, tmp_path / "c", "t", workers=1)
    dat = copies[1].with_suffix(".dat")
    os.utime(dat, ns=(dat.stat().st_atime_ns, dat.stat().st_mtime_ns + 10**9))
    second = build_cache(copies, PARAMS, tmp_path / "c", "t", workers=1)
    assert second.npy != first.npy and not first.npy.exists()  # stale cache of the same name removed
    np.testing.assert_array_equal(second.array, first.array)


def test_parallel_build_matches_serial(records: list[Path], tmp_path: Path, monkeypatch) -> None:
    from medcl.data import ecg_cache

    monkeypatch.setattr(ecg_cache, "MIN_RECORDS_PER_WORKER", 1)
    assert ecg_cache.effective_workers(2, 10) == 2
    serial = build_cache(records, PARAMS, tmp_path / "a", "t", workers=1)
    parallel = build_cache(records, PARAMS, tmp_path / "b", "t", workers=2, chunk=3)
    np.testing.assert_array_equal(parallel.array, serial.array)


def test_worker_count_policy() -> None:
    from medcl.data.ecg_cache import MIN_RECORDS_PER_WORKER, effective_workers

    assert effective_workers(8, 10) == 1
    assert effective_workers(8, 3 * MIN_RECORDS_PER_WORKER) == 3
    assert effective_workers(1, 10**6) == 1


def test_bad_record_fails_cleanly(records: list[Path], tmp_path: Path) -> None:
    with pytest.raises(MedclError, match="nope.hea: WFDB header not found"):
        build_cache([*records[:2], tmp_path / "nope"], PARAMS, tmp_path / "c", "t", workers=1)
    assert list((tmp_path / "c").iterdir()) == []


def test_wfdb_folder_labels_from_headers(shared_data: Path, tmp_path: Path) -> None:
    folder = WFDBFolder(shared_data / "ecg" / "cinc2021-sample", fs=100, cache_dir=tmp_path, workers=1)
    assert len(folder) == 20 and len(folder.labels) == 71
    hr0 = folder.record_ids.index("HR06000")
    assert {folder.labels[j] for j in np.flatnonzero(folder.y[hr0])} == {"SR", "TAB_"}
    e0 = folder.record_ids.index("E07500")  # LAE + SB
    assert {folder.labels[j] for j in np.flatnonzero(folder.y[e0])} == {"LAO/LAE", "SBRAD"}
    x, y = folder.arrays([hr0])
    assert x.shape == (1, 12, 1000)
    np.testing.assert_array_equal(x[0], read_ecg(folder.record_paths[hr0]).signal)
    sig, lab = folder.dataset()[hr0]
    assert tuple(sig.shape) == (12, 1000) and float(lab.sum()) == 2.0


def test_wfdb_folder_with_label_csv(records: list[Path], tmp_path: Path) -> None:
    root = records[0].parents[2]
    rel = [str(r.relative_to(root)) for r in records[:4]]
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"record": rel, "sick": [0, 1, 1, 0]}).to_csv(csv, index=False)
    folder = WFDBFolder(root, csv, cache_dir=tmp_path, workers=1)
    assert folder.labels == ["sick"] and folder.y[:, 0].tolist() == [0, 1, 1, 0]
    pd.DataFrame({"record": rel, "sick": [0, 2, 1, 0]}).to_csv(csv, index=False)
    with pytest.raises(MedclError, match="labels.csv: label columns must hold 0/1; sick"):
        WFDBFolder(root, csv)
