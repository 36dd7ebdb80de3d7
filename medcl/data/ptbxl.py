"""PTB-XL (Wagner et al., 2020, Sci. Data 7:154): database, SCP label sets, folds, cached arrays.

Label convention (the PTB-XL benchmark of Strodthoff et al., 2021, which ProtoECGNet builds on):
a statement counts for a record when its code is a key of ``scp_codes``, whatever the likelihood
(PTB-XL stores rhythm statements with likelihood 0.0). ``min_likelihood`` makes it stricter.
Label spaces are fixed by the statement table (e.g. always the 71 codes of ``all``), sorted by code
like the benchmark's ``MultiLabelBinarizer``; records without any label of the set are kept as
all-zero rows. Folds: ``strat_fold`` 1-8 train, 9 validation, 10 test.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from medcl.data.ecg_cache import DecodeParams
from medcl.data.ptbxl_statements import (  # noqa: F401  (re-exported: the label API of PTB-XL)
    BRANCH_CATEGORY,
    LABEL_SETS,
    label_names,
    load_label_groups,
    packaged_statements,
)
from medcl.data.wfdb_folder import CachedECGSet, ECGArrayDataset, record_length
from medcl.errors import MedclError

SPLITS = {"train": tuple(range(1, 9)), "val": (9,), "test": (10,)}
Split = Literal["train", "val", "test", "all"]


def _code_to_label(label_set: str, table: pd.DataFrame) -> dict[str, str]:
    """Map each SCP code to the label it counts for in ``label_set`` (diagnostic aggregation)."""
    if label_set in ("subdiagnostic", "superdiagnostic"):
        col = "diagnostic_subclass" if label_set == "subdiagnostic" else "diagnostic_class"
        diag = table.loc[table.diagnostic == 1]
        return dict(zip(diag.code, diag[col]))
    return {c: c for c in label_names(label_set, table)}


def parse_scp_codes(text: str, where: str) -> dict[str, float]:
    """Parse one ``scp_codes`` cell (a Python dict literal) safely with ``ast.literal_eval``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise MedclError(f"{where}: scp_codes is not a dict literal ({exc})") from None
    if not isinstance(value, dict):
        raise MedclError(f"{where}: scp_codes is a {type(value).__name__}, expected a dict")
    return {str(k): float(v) for k, v in value.items()}


def label_matrix(
    scp_codes: list[dict[str, float]], labels: list[str], code_to_label: dict[str, str],
    min_likelihood: float | None = None,
) -> np.ndarray:
    """Multi-hot ``(n_records, n_labels)`` float32 matrix; a code counts if present (or >= threshold)."""
    col = {name: j for j, name in enumerate(labels)}
    pairs = [
        (i, col[code_to_label[code]])
        for i, codes in enumerate(scp_codes)
        for code, lik in codes.items()
        if code_to_label.get(code) in col and (min_likelihood is None or lik >= min_likelihood)
    ]
    out = np.zeros((len(scp_codes), len(labels)), np.float32)
    if pairs:
        rows, cols = np.array(pairs).T
        out[rows, cols] = 1.0
    return out


def read_database(root: Path) -> pd.DataFrame:
    """Read ``ptbxl_database.csv`` (index ``ecg_id``) with ``scp_codes`` parsed to dicts."""
    path = root / "ptbxl_database.csv"
    if not path.is_file():
        raise MedclError(f"{path}: not found; expected a PTB-XL folder")
    db = pd.read_csv(path, index_col="ecg_id")
    missing = {"scp_codes", "strat_fold", "filename_lr", "filename_hr"} - set(db.columns)
    if missing:
        raise MedclError(f"{path}: missing columns {', '.join(sorted(missing))}")
    db["scp_codes"] = [parse_scp_codes(t, f"{path}: ecg_id {i}") for i, t in zip(db.index, db.scp_codes)]
    return db


def read_statements(root: Path) -> pd.DataFrame:
    """``scp_statements.csv`` of the folder (flags as 0/1) or, when absent, the packaged table."""
    path = root / "scp_statements.csv"
    if not path.is_file():
        return packaged_statements()
    raw = pd.read_csv(path, index_col=0)
    table = pd.DataFrame({"code": raw.index.astype(str), "description": raw.description.fillna("").values})
    for flag in ("diagnostic", "form", "rhythm"):
        table[flag] = raw[flag].fillna(0).astype(int).values
    for col in ("diagnostic_class", "diagnostic_subclass"):
        table[col] = raw[col].fillna("").astype(str).values
    return table


class PTBXL(CachedECGSet):
    """A PTB-XL folder: labels, folds and decoded 12-lead arrays through the memory-mapped cache.

    Args:
        root: folder holding ``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/500``.
        fs: 100 (``filename_lr``) or 500 (``filename_hr``).
        label_set: one of :data:`LABEL_SETS`.
        n_samples: decoded length (default 10 s at ``fs``).
        highpass: high-pass cut-off in Hz (None disables).
        cache_dir: where the decoded cache lives (default ``$MEDCL_CACHE_DIR`` or ``~/.cache``).
        min_likelihood: count a code only at or above this likelihood (default: presence).
        workers: decoding processes for the first build.
        folds: ``{"train": (...), "val": (...), "test": (...)}`` strat_fold numbers of each split
            (default :data:`SPLITS`: 1-8 / 9 / 10).

    Example:
        >>> data = PTBXL("ptbxl/", fs=100, label_set="all")  # doctest: +SKIP
        >>> x, y = data.arrays("train")                      # (n, 12, 1000) mV, (n, 71)
    """

    def __init__(
        self,
        root: str | Path,
        fs: int = 100,
        label_set: str = "all",
        *,
        n_samples: int | None = None,
        highpass: float | None = 0.5,
        cache_dir: str | Path | None = None,
        min_likelihood: float | None = None,
        workers: int | None = None,
        folds: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        if fs not in (100, 500):
            raise MedclError(f"fs: PTB-XL has 100 Hz and 500 Hz files, got {fs}")
        self.root = Path(root)
        self.fs = fs
        self.label_set = label_set
        self.database = read_database(self.root)
        self.statements = read_statements(self.root)
        self.labels = label_names(label_set, self.statements)
        self.params = DecodeParams(fs=fs, n_samples=record_length(fs, n_samples), highpass=highpass)
        self.cache_dir, self.workers = cache_dir, workers
        self.splits = {k: tuple(v) for k, v in (folds or SPLITS).items()}
        self.cache_name = f"ptbxl-{fs}hz"
        column = "filename_lr" if fs == 100 else "filename_hr"
        self.record_paths = [self.root / f for f in self.database[column]]
        self.y = label_matrix(
            list(self.database.scp_codes), self.labels, _code_to_label(label_set, self.statements),
            min_likelihood,
        )

    @property
    def ecg_ids(self) -> np.ndarray:
        return self.database.index.to_numpy()

    @property
    def folds(self) -> np.ndarray:
        return self.database.strat_fold.to_numpy()

    def split_indices(self, split: Split) -> np.ndarray:
        """Row indices of ``split`` (default train = folds 1-8, val = 9, test = 10; all = every row)."""
        if split == "all":
            return np.arange(len(self))
        if split not in self.splits:
            raise MedclError(f"split: unknown value {split!r}; expected train, val, test or all")
        return np.flatnonzero(np.isin(self.folds, self.splits[split]))

    def arrays(self, split: Split = "all") -> tuple[np.ndarray, np.ndarray]:
        """In-memory ``(x (n, 12, T) float32 mV, y (n, C) float32)`` of ``split``."""
        return super().arrays(self.split_indices(split))

    def dataset(self, split: Split = "all") -> ECGArrayDataset:
        """Torch dataset of ``split`` over the memory map."""
        return super().dataset(self.split_indices(split))
