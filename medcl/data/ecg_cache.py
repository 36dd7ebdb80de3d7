"""Decoded-ECG cache: one memory-mapped float32 array per (record list, rate, filter, length).

Decoding a WFDB record (read, resample, high-pass) costs milliseconds; a training epoch over
PTB-XL reads 17k records. The cache decodes every record once, in parallel worker processes
(chunked, each worker writing its rows straight into the memory map), into
``<name>-<key>.npy`` (shape ``(n_records, 12, n_samples)``) plus ``<name>-<key>.json`` (the index:
record paths in row order, parameters). ``key`` hashes the parameters and every record file's path,
size and mtime, so a changed file or option gives a new key and a rebuild; stale caches of the
same ``name`` are removed. Both files are written to temporary names and moved into place with
``os.replace``; the index goes last, so a half-built cache is never used, and the temporary
``.medcl-tmp-`` array of a killed build is removed by the next one. Workers die with their parent
(:func:`die_with_parent`). Workers are spawned,
not forked (safe when the parent has initialised CUDA or thread pools; this module imports
neither torch nor pandas, so they start fast); the torch view is
:class:`medcl.data.wfdb_folder.ECGArrayDataset`.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medcl.errors import MedclError
from medcl.io.ecg import LEADS, record_name
from medcl.io.ecg_formats import WFDB_SUFFIXES

CACHE_VERSION = 1
MIN_RECORDS_PER_WORKER = 250
"""A spawned worker costs ~1-3 s of imports; below this many records per worker, use fewer."""


@dataclass(frozen=True)
class DecodeParams:
    """How records are decoded (the arguments of :func:`medcl.io.ecg.read_ecg`)."""

    fs: float = 100
    n_samples: int = 1000
    highpass: float | None = 0.5
    crop: str = "start"
    min_fraction: float = 0.9


def default_cache_dir() -> Path:
    """``$MEDCL_CACHE_DIR`` or ``~/.cache/medcl/ecg``."""
    env = os.environ.get("MEDCL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "medcl" / "ecg"


def _dir_stats(folder: str) -> dict[str, tuple[int, int]]:
    """``{file name: (size, mtime_ns)}`` of a folder's WFDB files (one ``scandir``)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    stats = {e.name: e.stat() for e in entries if os.path.splitext(e.name)[1] in WFDB_SUFFIXES}
    return {name: (st.st_size, st.st_mtime_ns) for name, st in stats.items()}


def cache_key(records: Sequence[str | Path], params: DecodeParams) -> str:
    """SHA-256 of the parameters and each record's absolute path, file sizes and mtimes.

    Stats come from one ``scandir`` per folder, so keying 20k records takes milliseconds.
    """
    bases = [os.path.abspath(record_name(r)) for r in records]
    folders: dict[str, dict[str, tuple[int, int]]] = {}
    entries = []
    for base in bases:
        folder, name = os.path.split(base)
        stats = folders.get(folder)
        if stats is None:
            stats = folders[folder] = _dir_stats(folder)
        entries.append([base, [stats.get(name + s) for s in WFDB_SUFFIXES]])
    payload = json.dumps([CACHE_VERSION, asdict(params), entries])
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _decode_rows(npy: str, start: int, records: list[str], params: DecodeParams) -> int:
    """Worker: decode ``records`` into rows ``start...`` of the ``.npy`` memory map."""
    from medcl.io.ecg import read_ecg

    out = np.load(npy, mmap_mode="r+")
    for i, rec in enumerate(records):
        out[start + i] = read_ecg(rec, **asdict(params)).signal
    out.flush()
    return len(records)


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when ``parent`` dies, even by SIGKILL.

    Linux delivers SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and as a
    fallback, a daemon thread checks once a second whether the parent is still this process's parent.
    """
    import signal
    import threading
    import time

    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # died before the hook was set
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="medcl-parent-watch").start()


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _decode_all(npy: Path, records: list[str], params: DecodeParams, workers: int, chunk: int) -> None:
    from medcl.utils import progress_bar

    spans = _chunks(len(records), chunk)
    desc = f"ECG cache ({len(records)} records, chunks of {chunk})"
    if workers <= 1 or len(spans) == 1:
        for a, b in progress_bar(spans, desc):
            _decode_rows(str(npy), a, records[a:b], params)
        return
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_decode_rows, str(npy), a, records[a:b], params) for a, b in spans]
        for fut in progress_bar(cf.as_completed(futures), desc, total=len(futures)):
            fut.result()


class ECGCache:
    """A built cache: ``array`` is the read-only ``(n, 12, n_samples)`` float32 memory map."""

    def __init__(self, npy: Path, index: dict) -> None:
        self.npy = npy
        self.index = index
        self.records: list[str] = index["records"]
        self.array: np.ndarray = np.load(npy, mmap_mode="r")
        self._row = {r: i for i, r in enumerate(self.records)}

    def __len__(self) -> int:
        return len(self.records)

    def row(self, record: str | Path) -> int:
        """Row of ``record`` (as given when building)."""
        try:
            return self._row[str(record)]
        except KeyError:
            raise MedclError(f"{record}: not in ECG cache {self.npy}") from None


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _can_spawn() -> bool:
    """Spawned workers re-import ``__main__``; impossible when it is stdin or an interactive prompt."""
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is not None and Path(path).is_file()


def effective_workers(requested: int | None, n_records: int) -> int:
    """Requested workers (default: available CPUs, at most 8), fewer for small record lists.

    Decoding runs in this process when ``__main__`` cannot be re-imported by spawned workers.
    """
    if not _can_spawn():
        return 1
    wanted = requested if requested is not None else min(_available_cpus(), 8)
    return max(1, min(wanted, -(-n_records // MIN_RECORDS_PER_WORKER)))


def _remove_stale(cache_dir: Path, name: str, keep: str) -> None:
    for old in cache_dir.glob(f"{name}-*.*"):
        if old.suffix in (".npy", ".json") and old.stem != keep:
            old.unlink(missing_ok=True)


def build_cache(
    records: Sequence[str | Path],
    params: DecodeParams,
    cache_dir: str | Path | None = None,
    name: str = "ecg",
    workers: int | None = None,
    chunk: int = 64,
) -> ECGCache:
    """Return the cache for ``records`` decoded with ``params``, building it if needed.

    Args:
        records: WFDB record paths, in row order.
        params: decoding parameters.
        cache_dir: where caches live (default :func:`default_cache_dir`).
        name: cache family name (e.g. ``"ptbxl-100hz"``); stale caches of this name are removed.
        workers: decoding processes (default: available CPUs, at most 8; never more than one per
            :data:`MIN_RECORDS_PER_WORKER` records; 1 decodes in this process).
        chunk: records per worker task.

    Raises:
        MedclError: if any record cannot be decoded (the message names it); nothing is left behind.
    """
    records = [str(r) for r in records]
    if not records:
        raise MedclError(f"{name}: no records to cache")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{cache_key(records, params)}"
    npy, idx = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    if npy.is_file() and idx.is_file():
        return ECGCache(npy, json.loads(idx.read_text()))
    workers = effective_workers(workers, len(records))
    _build(npy, records, params, workers, chunk)
    index = {"version": CACHE_VERSION, "params": asdict(params), "leads": list(LEADS), "records": records}
    from medcl.utils import write_json

    write_json(idx, index)
    _remove_stale(cache_dir, name, stem)
    return ECGCache(npy, index)


def _build(npy: Path, records: list[str], params: DecodeParams, workers: int, chunk: int) -> None:
    from medcl.utils import atomic_write_path

    shape = (len(records), len(LEADS), int(params.n_samples))
    with atomic_write_path(npy, suffix=".npy") as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape).flush()
        _decode_all(tmp, records, params, workers, chunk)

