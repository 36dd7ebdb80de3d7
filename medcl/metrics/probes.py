"""Linear probes of learned representations (fixed seed), under two protocols.

Used to evaluate contrastive analysis (Louiset et al., ICLR 2024): an attribute is "in" a space when
a linear model reads it from that space's features on held-out samples.

- ``medcl``: standardised features, ``LogisticRegression`` scored by balanced accuracy, ``Ridge``
  scored by R^2 and MAE.
- ``paper``: the official SepCLR evaluation: unscaled default ``LogisticRegression`` scored by plain
  accuracy, ``LinearRegression`` scored by MAE.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "is_categorical",
    "probe_attribute",
    "probe_classification",
    "probe_classification_paper",
    "probe_regression",
    "probe_regression_paper",
    "split_masks",
]

Protocol = Literal["paper", "medcl"]
PROTOCOLS: tuple[str, ...] = ("paper", "medcl")

_MAX_CLASSES = 20


def is_categorical(values: np.ndarray) -> bool:
    """Treat non-numeric values, or integer values with at most 20 levels, as classes."""
    if values.dtype.kind not in "iufb":
        return True
    finite = values[np.isfinite(values.astype(float))]
    return bool(np.all(finite == np.round(finite)) and np.unique(finite).size <= _MAX_CLASSES)


def split_masks(
    n: int, split: np.ndarray | None = None, stratify: np.ndarray | None = None, test_size: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/test masks: from a ``split`` column (``train``/``test``) or a stratified random split."""
    if split is not None:
        split = np.asarray(split).astype(str)
        test = split == "test"
        if test.any() and (~test).any():
            return ~test, test
    idx = np.arange(n)
    strat = stratify if stratify is not None and np.unique(stratify).size > 1 else None
    try:
        tr, _ = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
    except ValueError:  # a class too small to stratify
        tr, _ = train_test_split(idx, test_size=test_size, random_state=seed)
    train = np.zeros(n, bool)
    train[tr] = True
    return train, ~train


def probe_classification(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """Logistic regression on standardised features; balanced accuracy and its chance level."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    score = balanced_accuracy_score(y_test, model.predict(x_test))
    return {"metric": "balanced_accuracy", "score": float(score), "chance": 1.0 / np.unique(y_train).size}


def probe_regression(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> list[dict[str, float]]:
    """Ridge regression on standardised features; R^2 (chance 0) and MAE (chance: predict the train mean)."""
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0, random_state=seed))
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    mean_mae = mean_absolute_error(y_test, np.full_like(y_test, y_train.mean(), dtype=float))
    return [
        {"metric": "r2", "score": float(r2_score(y_test, pred)), "chance": 0.0},
        {"metric": "mae", "score": float(mean_absolute_error(y_test, pred)), "chance": float(mean_mae)},
    ]


def probe_classification_paper(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """The official SepCLR probe: default ``LogisticRegression`` on raw features, plain accuracy.

    Chance is the accuracy of always predicting the most frequent training class. The default
    ``max_iter`` (100) is kept, as in the official code; its convergence warnings are silenced.
    """
    model = LogisticRegression(random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    classes, counts = np.unique(y_train, return_counts=True)
    chance = float(np.mean(np.asarray(y_test) == classes[np.argmax(counts)]))
    return {"metric": "accuracy", "score": float(accuracy_score(y_test, model.predict(x_test))), "chance": chance}


def probe_regression_paper(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> list[dict[str, float]]:
    """The official SepCLR regression probe: ``LinearRegression`` on raw features, MAE (chance: the train mean)."""
    pred = LinearRegression().fit(x_train, y_train).predict(x_test)
    mean_mae = mean_absolute_error(y_test, np.full_like(y_test, y_train.mean(), dtype=float))
    return [{"metric": "mae", "score": float(mean_absolute_error(y_test, pred)), "chance": float(mean_mae)}]


_PROBES: dict[str, tuple[Callable[..., dict], Callable[..., list[dict]]]] = {
    "medcl": (probe_classification, probe_regression),
    "paper": (probe_classification_paper, probe_regression_paper),
}


def probe_attribute(
    spaces: Mapping[str, np.ndarray],
    values: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    name: str,
    seed: int = 0,
    protocol: Protocol = "medcl",
) -> list[dict]:
    """Probe one attribute in each feature space, on the rows where it is defined.

    Args:
        spaces: ``{"common": (n, d), "salient": (n, d), ...}`` feature matrices.
        values: ``(n,)`` attribute values; empty / NaN entries are skipped.
        train: ``(n,)`` boolean train mask; ``test`` likewise.
        name: attribute name written into each result row.
        seed: probe seed.
        protocol: ``"medcl"`` (standardised, balanced accuracy, R^2 + MAE) or ``"paper"`` (raw
            features, accuracy, MAE), see the module docstring.

    Returns:
        Rows ``{"attribute", "space", "metric", "score", "chance"}`` (none if too few samples).
    """
    values = np.asarray(values, dtype=object)
    defined = np.array([v is not None and v == v and str(v) != "" for v in values])
    categorical = is_categorical(np.asarray(values[defined].tolist()))
    y = values[defined].astype(str) if categorical else values[defined].astype(float)
    tr, te = train[defined], test[defined]
    if tr.sum() < 4 or te.sum() < 2 or (categorical and np.unique(y[tr]).size < 2):
        return []
    classify, regress = _PROBES[protocol]
    rows = []
    for space, feats in spaces.items():
        x = np.asarray(feats)[defined]
        if categorical:
            results = [classify(x[tr], y[tr], x[te], y[te], seed)]
        else:
            results = regress(x[tr], y[tr], x[te], y[te], seed)
        rows += [{"attribute": name, "space": space, **r} for r in results]
    return rows
