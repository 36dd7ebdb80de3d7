"""medcl.data.ptbxl: label sets, safe scp_codes parsing, folds, cached arrays on a synthetic folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medcl.data.ptbxl import (
    PTBXL,
    label_matrix,
    label_names,
    load_label_groups,
    packaged_statements,
    parse_scp_codes,
    read_statements,
)
from medcl.data.synthetic.ecg import write_dataset
from medcl.errors import MedclError
from medcl.io.ecg import read_ecg


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ptbxl"), 40, seed=3).parent


def test_label_set_sizes_match_ptbxl() -> None:
    sizes = {s: len(label_names(s)) for s in ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")}
    assert sizes == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert label_names("superdiagnostic") == ["CD", "HYP", "MI", "NORM", "STTC"]
    with pytest.raises(MedclError, match="label_set: unknown value 'nope'"):
        label_names("nope")


def test_prototype_groups_match_shared_categories(shared_data: Path) -> None:
    groups = load_label_groups()
    assert {k: len(v) for k, v in groups.items()} == {"rhythm": 16, "morphology": 52, "global": 3}
    assert groups["global"] == ["DIG", "EL", "NORM"]
    assert {"1AVB", "IVCD", "AFIB", "SR"} <= set(groups["rhythm"])
    ref = pd.read_csv(shared_data / "ecg" / "ptbxl-meta" / "prototype_categories.csv", index_col=0)
    for branch, cat in (("rhythm", 1), ("morphology", 3), ("global", 4)):
        assert groups[branch] == sorted(ref.index[ref.prototype_category == cat])
    all_labels = label_names("all")
    for codes in groups.values():  # each group is an ordered subsequence of "all"
        pos = [all_labels.index(c) for c in codes]
        assert pos == sorted(pos)


def test_packaged_statements_equal_shared_table(shared_data: Path) -> None:
    ref = pd.read_csv(shared_data / "ecg" / "ptbxl-meta" / "scp_statements.csv", index_col=0)
    ours = packaged_statements().set_index("code")
    assert list(ours.index) == list(ref.index)
    np.testing.assert_array_equal(ours.diagnostic.values, ref.diagnostic.fillna(0).values)
    assert (ours.diagnostic_subclass.values == ref.diagnostic_subclass.fillna("").values).all()
    shared = read_statements(shared_data / "ecg" / "ptbxl-meta")
    assert (shared[["code", "form", "rhythm"]].values == packaged_statements()[["code", "form", "rhythm"]].values).all()


def test_scp_codes_parsed_without_eval() -> None:
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}", "x") == {"NORM": 100.0, "SR": 0.0}
    with pytest.raises(MedclError, match="row 3: scp_codes is not a dict literal"):
        parse_scp_codes("__import__('os').system('true')", "row 3")
    with pytest.raises(MedclError, match="is a list"):
        parse_scp_codes("['NORM']", "row 4")


def test_label_matrix_hand_computed() -> None:
    codes = [{"NORM": 100.0, "SR": 0.0}, {"IMI": 50.0, "ILMI": 15.0}, {}]
    table = packaged_statements()
    from medcl.data.ptbxl import _code_to_label

    y = label_matrix(codes, ["IMI", "NORM", "SR"], _code_to_label("all", table))
    np.testing.assert_array_equal(y, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])
    sup = label_names("superdiagnostic")
    y = label_matrix(codes, sup, _code_to_label("superdiagnostic", table))
    np.testing.assert_array_equal(y, [[0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    y = label_matrix(codes, ["IMI", "ILMI"], {"IMI": "IMI", "ILMI": "ILMI"}, min_likelihood=20.0)
    np.testing.assert_array_equal(y, [[0, 0], [1, 0], [0, 0]])


def test_ptbxl_folder_end_to_end(folder: Path, tmp_path: Path) -> None:
    data = PTBXL(folder, fs=100, label_set="all", cache_dir=tmp_path, workers=1)
    assert len(data) == 40 and len(data.labels) == 71
    train, val, test = (data.split_indices(s) for s in ("train", "val", "test"))
    assert len(train) == 32 and len(val) == 4 and len(test) == 4
    assert set(data.folds[train]) == set(range(1, 9)) and set(data.folds[test]) == {10}
    x, y = data.arrays("val")
    assert x.shape == (4, 12, 1000) and x.dtype == np.float32 and y.shape == (4, 71)
    first = data.split_indices("val")[0]
    expected = read_ecg(data.record_paths[first], fs=100, n_samples=1000).signal
    np.testing.assert_array_equal(x[0], expected)
    # rhythm codes are stored with likelihood 0.0 (as in PTB-XL) and still count
    db_codes = data.database.scp_codes.iloc[first]
    assert {data.labels[j] for j in np.flatnonzero(y[0])} == set(db_codes)
    sig, lab = data.dataset("val")[0]
    assert isinstance(sig, torch.Tensor) and torch.equal(sig, torch.from_numpy(expected))
    assert torch.equal(lab, torch.from_numpy(y[0]))


def test_ptbxl_500hz_and_errors(folder: Path, tmp_path: Path) -> None:
    data = PTBXL(folder, fs=500, label_set="superdiagnostic", cache_dir=tmp_path, workers=1)
    assert data.signals.shape == (40, 12, 5000) and data.labels == ["CD", "HYP", "MI", "NORM", "STTC"]
    with pytest.raises(MedclError, match="fs: PTB-XL has 100 Hz and 500 Hz"):
        PTBXL(folder, fs=250)
    with pytest.raises(MedclError, match="ptbxl_database.csv: not found"):
        PTBXL(tmp_path)
