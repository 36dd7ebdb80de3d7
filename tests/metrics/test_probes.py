"""Linear probes: separable vs uninformative features, regression, splits, undefined rows."""

from __future__ import annotations

import numpy as np
import pytest

from medcl.metrics.probes import is_categorical, probe_attribute, split_masks


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    informative = np.eye(3)[label] * 4 + rng.normal(size=(n, 3))
    noise = rng.normal(size=(n, 3))
    return label, informative, noise


def test_probe_separates_informative_from_noise():
    label, informative, noise = _data()
    train, test = split_masks(len(label), stratify=label, seed=0)
    rows = probe_attribute({"common": informative, "salient": noise}, label, train, test, "kind")
    by_space = {r["space"]: r for r in rows}
    assert by_space["common"]["metric"] == "balanced_accuracy"
    assert by_space["common"]["score"] > 0.95
    assert abs(by_space["salient"]["score"] - 1 / 3) < 0.15
    assert by_space["salient"]["chance"] == pytest.approx(1 / 3)


def test_probe_regression_r2_and_mae():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    age = 50 + 10 * x[:, 0] + 0.1 * rng.normal(size=200)
    train, test = split_masks(200, seed=0)
    rows = {r["metric"]: r for r in probe_attribute({"common": x}, age, train, test, "age")}
    assert rows["r2"]["score"] > 0.99 and rows["r2"]["chance"] == 0.0
    assert rows["mae"]["score"] < 0.1 * rows["mae"]["chance"]


def test_undefined_rows_are_skipped_and_split_column_used():
    label, informative, _ = _data(200)
    values = label.astype(object)
    values[:50] = np.nan  # e.g. a salient attribute absent for background subjects
    split = np.array(["train", "test"] * 100)
    train, test = split_masks(200, split)
    assert test.sum() == 100 and not (train & test).any()
    rows = probe_attribute({"common": informative}, values, train, test, "subtype")
    assert rows[0]["score"] > 0.95


def test_is_categorical():
    assert is_categorical(np.array(["a", "b"]))
    assert is_categorical(np.array([0, 1, 2, 1]))
    assert not is_categorical(np.array([0.5, 1.25, 3.0]))
