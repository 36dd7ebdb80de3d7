"""medcl.data.synthetic.ecg: determinism, label effects where the ground truth says, WFDB output."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medcl.data.synthetic.ecg import (
    LABELS,
    _write_wfdb,
    generate,
    load_truth,
    record_truth_mask,
    truth_mask,
    write_dataset,
)
from medcl.io.ecg import LEADS, read_ecg


@pytest.fixture(scope="module")
def batch():
    return generate(200, seed=11)


def _has(batch, code: str) -> np.ndarray:
    return np.array([code in labels for labels in batch.labels])


def test_deterministic_from_seed() -> None:
    a, b, c = generate(4, seed=5), generate(4, seed=5), generate(4, seed=6)
    np.testing.assert_array_equal(a.signals, b.signals)
    assert a.labels == b.labels and not np.allclose(a.signals, c.signals)


def test_rhythm_labels_set_heart_rate_and_regularity(batch) -> None:
    rr = [np.diff(r) for r in batch.r_peaks_s]
    mean_rr = np.array([r.mean() for r in rr])
    cv = np.array([r.std() / r.mean() for r in rr])
    assert (mean_rr[_has(batch, "STACH")] < 60 / 105 + 0.01).all()
    assert (mean_rr[_has(batch, "SBRAD")] > 60 / 55 - 0.02).all()
    assert (cv[_has(batch, "AFIB")] > 0.1).all() and (cv[~_has(batch, "AFIB")] < 0.05).all()
    norm = _has(batch, "NORM")
    morph = np.stack([_has(batch, c) for c in ("IMI", "AMI", "INVT", "CLBBB")]).any(axis=0)
    np.testing.assert_array_equal(norm, ~morph & ~_has(batch, "AFIB"))


def test_st_elevation_lives_in_the_truth_region(batch) -> None:
    fs, n = 500, 5000
    for code in ("IMI", "AMI"):
        has = _has(batch, code)
        masks = np.stack([truth_mask(code, r, t, fs, n) for r, t in zip(batch.r_peaks_s, batch.t_offset_s)])
        assert (masks.any(axis=2) == masks[0].any(axis=1)).all()  # same leads in every record
        region = (batch.signals * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
        # the ST bump (0.2-0.35 mV peak) raises the mean of the region by > 0.08 mV
        assert np.median(region[has]) - np.median(region[~has]) > 0.08
    imi_leads = truth_mask("IMI", batch.r_peaks_s[0], batch.t_offset_s[0], fs, n).any(axis=1)
    assert [LEADS[i] for i in np.flatnonzero(imi_leads)] == ["II", "III", "aVF"]
    assert truth_mask("SR", batch.r_peaks_s[0], 0.3, 100, 1000).all()


def _beat_features(batch, fs: int = 500) -> np.ndarray:
    """Mean beat per lead around the true R peaks plus RR mean/CV: a plain, independent featuriser."""
    sig = batch.signals
    offs = np.arange(-int(0.3 * fs), int(0.6 * fs), 10)
    feats = []
    for i, peaks in enumerate(batch.r_peaks_s):
        idx = (np.round(peaks * fs).astype(int)[:, None] + offs).clip(0, sig.shape[-1] - 1)
        beat = sig[i][:, idx].mean(axis=1)
        rr = np.diff(peaks)
        feats.append(np.concatenate([beat.ravel(), [rr.mean(), rr.std() / rr.mean()]]))
    return np.asarray(feats)


def test_labels_learnable_by_a_linear_model(batch) -> None:
    x = _beat_features(batch)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    y = np.stack([_has(batch, c) for c in LABELS], axis=1)
    aucs = []
    for j in range(len(LABELS)):
        clf = LogisticRegression(C=0.1, max_iter=2000).fit(x[:130], y[:130, j])
        aucs.append(roc_auc_score(y[130:, j], clf.decision_function(x[130:])))
    assert np.mean(aucs) > 0.9, dict(zip(LABELS, np.round(aucs, 3)))


def test_fast_writer_matches_wfdb_wrsamp_bytes(tmp_path: Path) -> None:
    sig = generate(1, seed=2).signals[0]
    _write_wfdb(tmp_path, "ours/rec", sig, 500)
    (tmp_path / "ref").mkdir()
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T.astype(float),
                fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path / "ref"))
    for ext in (".hea", ".dat"):
        assert filecmp.cmp(tmp_path / "ours" / f"rec{ext}", tmp_path / "ref" / f"rec{ext}", shallow=False)


def test_written_folder_is_ptbxl_shaped(tmp_path: Path) -> None:
    db_path = write_dataset(tmp_path, 12, seed=4)
    db = pd.read_csv(db_path, index_col="ecg_id")
    assert list(db.index) == list(range(1, 13)) and set(db.strat_fold) == set(range(1, 11))
    assert db.filename_lr.iloc[0] == "records100/00000/00001_lr"
    hr = read_ecg(tmp_path / db.filename_hr.iloc[0], fs=500, highpass=None)
    lr = read_ecg(tmp_path / db.filename_lr.iloc[0], fs=100, highpass=None)
    assert hr.signal.shape == (12, 5000) and lr.signal.shape == (12, 1000)
    down = read_ecg(tmp_path / db.filename_hr.iloc[0], fs=100, highpass=None).signal
    np.testing.assert_allclose(lr.signal, down, atol=2e-3)  # 100 Hz files = anti-aliased 500 Hz
    truth = load_truth(tmp_path)
    assert set(truth) == {str(i) for i in range(1, 13)}
    assert sorted(truth["1"]["labels"]) == sorted(eval_free_keys(db.scp_codes.iloc[0]))
    mask = record_truth_mask(tmp_path, 1, truth["1"]["labels"][0], fs=100, n_samples=1000)
    assert mask.shape == (12, 1000) and mask.dtype == bool
    assert (tmp_path / "scp_statements.csv").is_file()


def eval_free_keys(text: str) -> list[str]:
    import ast

    return list(ast.literal_eval(text))
