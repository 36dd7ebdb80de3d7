"""Cached 12-lead ECG datasets: the torch view over the cache, and a generic "WFDB folder" cohort.

``WFDBFolder`` serves any cohort stored as WFDB records (PhysioNet/CinC 2021 ``.hea``+``.mat``,
PTB ``.dat``+``.xyz``, ...). Labels come either from a CSV (a ``record`` column with the record path
relative to the folder, without extension, plus one 0/1 column per label) or, without a CSV, from
the headers' SNOMED-CT ``# Dx:`` codes mapped to PTB-XL SCP statements
(:func:`medcl.io.ecg.snomed_to_scp`), so that a PTB-XL-trained model can be evaluated on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from medcl.data.ecg_cache import DecodeParams, ECGCache, build_cache
from medcl.data.ptbxl_statements import label_names as ptbxl_labels
from medcl.errors import MedclError

RECORD_SECONDS = 10
"""Default record length in seconds (PTB-XL's 10 s) when no sample count is given."""


def record_length(fs: int, n_samples: int | None = None) -> int:
    """Samples per record: ``n_samples``, else :data:`RECORD_SECONDS` at ``fs``."""
    return n_samples or RECORD_SECONDS * fs


class ECGArrayDataset(Dataset):
    """Torch ``Dataset`` over cache rows; items are ``(signal (12, T) float32, labels (C,) float32)``.

    Items are copies of memory-map rows (no per-item file reads); ``rows`` selects and orders them.
    Pickling (DataLoader workers under spawn/forkserver) sends the memory map's file name, not its
    contents; each worker re-opens the map.
    """

    def __init__(self, array: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> None:
        if len(labels) != len(array):
            raise MedclError(f"labels: {len(labels)} rows for {len(array)} cached records")
        self.array = array
        self.labels = np.asarray(labels, dtype=np.float32)
        self.rows = np.arange(len(array)) if rows is None else np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        filename = getattr(self.array, "filename", None)
        if filename is not None:
            state["array"] = str(filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["array"], str):
            state["array"] = np.load(state["array"], mmap_mode="r")
        self.__dict__.update(state)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.rows[i]
        return torch.from_numpy(np.array(self.array[row])), torch.from_numpy(self.labels[row])


class CachedECGSet:
    """Base of record collections decoded through :func:`~medcl.data.ecg_cache.build_cache`.

    Subclasses set ``record_paths`` (list of WFDB paths), ``y`` (``(n, C)`` float32), ``labels``,
    ``params`` (:class:`DecodeParams`), ``cache_dir``, ``workers`` and ``cache_name``.
    """

    record_paths: list[Path]
    y: np.ndarray
    labels: list[str]
    params: DecodeParams
    cache_dir: str | Path | None
    workers: int | None
    cache_name: str
    _cache: ECGCache | None = None

    def __len__(self) -> int:
        return len(self.record_paths)

    @property
    def cache(self) -> ECGCache:
        """The decoded-signal cache (built, in parallel, on first use; reused while inputs are unchanged)."""
        if self._cache is None:
            self._cache = build_cache(self.record_paths, self.params, self.cache_dir, self.cache_name, self.workers)
        return self._cache

    @property
    def signals(self) -> np.ndarray:
        """Read-only memory map ``(n_records, 12, n_samples)`` float32 mV, in record order."""
        return self.cache.array

    def arrays(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """In-memory ``(x (n, 12, T), y (n, C))`` for ``rows`` (default all)."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        return np.asarray(self.signals[rows]), self.y[rows]

    def dataset(self, rows: np.ndarray | None = None) -> ECGArrayDataset:
        """Torch dataset of ``rows`` (default all) over the memory map."""
        return ECGArrayDataset(self.signals, self.y, rows)


def _read_label_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    import pandas as pd

    table = pd.read_csv(path, dtype={"record": str})
    if "record" not in table.columns:
        raise MedclError(f"{path}: missing column 'record' (record path relative to the folder)")
    labels = [c for c in table.columns if c != "record"]
    values = table[labels].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in labels if values[c].isna().any() or not values[c].isin([0, 1]).all()]
    if bad:
        raise MedclError(f"{path}: label columns must hold 0/1; {', '.join(bad)} do not")
    return list(table.record), labels, values.to_numpy(np.float32)


def _labels_from_headers(records: list[Path], labels: list[str]) -> np.ndarray:
    from medcl.io.ecg import inspect_ecg

    col = {c: j for j, c in enumerate(labels)}
    y = np.zeros((len(records), len(labels)), np.float32)
    pairs = [(i, col[c]) for i, r in enumerate(records) for c in inspect_ecg(r)["scp_codes"] if c in col]
    if pairs:
        rows, cols = np.array(pairs).T
        y[rows, cols] = 1.0
    return y


class WFDBFolder(CachedECGSet):
    """Every WFDB record of a folder (recursively) or those listed in a labels CSV.

    Args:
        root: the folder.
        labels_csv: optional CSV (``record`` + 0/1 label columns); without it labels are the header
            ``# Dx:`` codes mapped to ``label_names`` (default: the 71 PTB-XL statements).
        label_names: label space when labels come from headers.
        fs, n_samples, highpass: decoding (see :func:`medcl.io.ecg.read_ecg`).
        cache_dir, workers: cache location and decoding processes.
    """

    def __init__(
        self,
        root: str | Path,
        labels_csv: str | Path | None = None,
        *,
        label_names: list[str] | None = None,
        fs: int = 100,
        n_samples: int | None = None,
        highpass: float | None = 0.5,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MedclError(f"{root}: not a folder")
        self.params = DecodeParams(fs=fs, n_samples=record_length(fs, n_samples), highpass=highpass)
        self.cache_dir, self.workers = cache_dir, workers
        self.cache_name = f"wfdb-{self.root.name}-{fs}hz"
        if labels_csv is not None:
            names, self.labels, self.y = _read_label_csv(Path(labels_csv))
            self.record_paths = [self.root / n for n in names]
        else:
            self.record_paths = [p.with_suffix("") for p in sorted(self.root.rglob("*.hea"))]
            if not self.record_paths:
                raise MedclError(f"{root}: no WFDB headers (*.hea) found")
            self.labels = list(label_names) if label_names is not None else ptbxl_labels("all")
            self.y = _labels_from_headers(self.record_paths, self.labels)

    @property
    def record_ids(self) -> list[str]:
        return [p.name for p in self.record_paths]
