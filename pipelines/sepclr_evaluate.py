"""SepCLR evaluation: linear probes of the common/salient spaces under the ``paper`` or ``medcl`` protocol.

Louiset et al., ICLR 2024. ``paper`` reproduces the official evaluation: every attribute probe is
fitted and scored on **target rows only**, with an unscaled default ``LogisticRegression`` (plain
accuracy) or ``LinearRegression`` (MAE), and the background-vs-target probe reads the
**projection-head outputs** (``zc_*``/``zs_*``). ``medcl`` uses standardised probes (balanced
accuracy, R^2 + MAE) on the encoder outputs, on every row where an attribute is defined and, for
attributes that background rows also carry, on target rows only as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from medcl.errors import MedclError
from medcl.metrics.probes import PROTOCOLS, Protocol

__all__ = ["ENCODER_SPACES", "PROJECTION_SPACES", "evaluate", "evaluate_table", "feature_spaces"]

#: column prefix -> space name, for the encoder outputs (probed, plotted) and the projection-head outputs.
ENCODER_SPACES = {"c": "common", "s": "salient", "h": "simclr"}
PROJECTION_SPACES = {"zc": "common", "zs": "salient", "z": "simclr"}
_FEATURE = re.compile(r"^(c|s|h|zc|zs|z)_\d+$")
_GROUP_IDS = {"background": 0, "target": 1}


def feature_spaces(table, prefixes: dict[str, str]) -> dict[str, np.ndarray]:
    """``{space name: (n, d) float64}`` for each prefix in ``prefixes`` that has ``<prefix>_<i>`` columns."""
    spaces = {}
    for prefix, name in prefixes.items():
        cols = [c for c in table.columns if c.startswith(f"{prefix}_") and c[len(prefix) + 1 :].isdigit()]
        if cols:
            spaces[name] = table[cols].to_numpy(np.float64)
    return spaces


def _attribute_probes(spaces, table, attrs, masks, target, seed: int, protocol: Protocol) -> list[dict]:
    """Probe rows of every attribute, tagged with the rows they used (``target`` or ``all``)."""
    from medcl.metrics.probes import probe_attribute

    train, test = masks
    rows = []
    for attr in attrs:
        on_background = bool(table.loc[~target, attr].notna().any())
        row_sets = {"target": target}
        if protocol == "medcl" and on_background:
            row_sets = {"all": np.ones_like(target), "target": target}
        for tag, keep in row_sets.items():
            found = probe_attribute(spaces, table[attr].to_numpy(), train & keep, test & keep, attr, seed, protocol)
            rows += [{**r, "rows": tag} for r in found]
    return rows


def _bg_tg(spaces, groups, masks, seed: int, protocol: Protocol) -> dict[str, float]:
    """Background-vs-target probe score in each space (all rows)."""
    from medcl.metrics.probes import probe_classification, probe_classification_paper

    probe = probe_classification_paper if protocol == "paper" else probe_classification
    train, test = masks
    return {name: probe(x[train], groups[train], x[test], groups[test], seed)["score"] for name, x in spaces.items()}


def _leakage(probes: list[dict], salient_attrs: set[str]) -> dict[str, dict[str, float]]:
    """Per attribute: score above chance (target-row probes) in the space where it should be absent."""
    out = {}
    for row in probes:
        if row["metric"] == "mae" or row["space"] == "simclr" or row["rows"] != "target":
            continue
        expected = "salient" if row["attribute"] in salient_attrs else "common"
        if row["space"] != expected:
            out[row["attribute"]] = {"expected_space": expected, "excess_over_chance": row["score"] - row["chance"]}
    return out


def _salient_norms(spaces: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, float]:
    if "salient" not in spaces:
        return {}
    norms = np.linalg.norm(spaces["salient"], axis=1)
    return {name: float(norms[groups == g].mean()) for name, g in _GROUP_IDS.items()}


def _groups(table, source: str) -> np.ndarray:
    if "group" not in table.columns:
        raise MedclError(f"{source}: missing column 'group'")
    groups = table["group"].map(_GROUP_IDS).to_numpy()
    if np.isnan(groups.astype(float)).any() or np.unique(groups).size < 2:
        raise MedclError(f"{source}: 'group' must hold both 'background' and 'target' for evaluation")
    return groups.astype(int)


def _bg_tg_spaces(table, encoder: dict[str, np.ndarray], source: str, protocol: Protocol) -> dict[str, np.ndarray]:
    if protocol == "medcl":
        return encoder
    projection = feature_spaces(table, PROJECTION_SPACES)
    if not projection:
        raise MedclError(f"{source}: protocol 'paper' probes background vs target on the projection-head outputs "
                         "(zc_*/zs_* or z_* columns); re-embed with 'medcl sepclr embed'")  # fmt: skip
    return projection


def evaluate_table(
    table, out_dir: str | os.PathLike | None, seed: int = 0, source: str = "embeddings", protocol: Protocol = "medcl"
) -> dict:
    """:func:`evaluate` on an embeddings table in memory (``out_dir=None``: write nothing)."""
    from medcl.data.manifest import RESERVED
    from medcl.metrics.probes import split_masks
    from medcl.utils import write_json

    if protocol not in PROTOCOLS:
        raise MedclError(f"protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    groups = _groups(table, source)
    encoder = feature_spaces(table, ENCODER_SPACES)
    if not encoder:
        raise MedclError(f"{source}: no c_*/s_*/h_* feature columns")
    split = table["split"].to_numpy() if "split" in table.columns else None
    masks = split_masks(len(table), split, groups, seed=seed)
    attrs = [c for c in table.columns if c not in RESERVED and not _FEATURE.match(str(c))]
    target = groups == 1
    probes = _attribute_probes(encoder, table, attrs, masks, target, seed, protocol)
    salient_attrs = {a for a in attrs if table.loc[~target, a].isna().all()}
    result: dict[str, Any] = {
        "protocol": protocol,
        "probes": probes,
        "bg_tg": _bg_tg(_bg_tg_spaces(table, encoder, source, protocol), groups, masks, seed, protocol),
        "bg_tg_features": "projection" if protocol == "paper" else "encoder",
        "salient_norm": _salient_norms(encoder, groups),
        "leakage": _leakage(probes, salient_attrs),
        "n": {"train": int(masks[0].sum()), "test": int(masks[1].sum())},
    }
    if out_dir is not None:
        write_json(Path(out_dir) / "evaluation.json", result)
        _pca_plots(encoder, table, attrs, Path(out_dir) / "plots")
    return result


def evaluate(embeddings: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0, protocol: Protocol = "medcl") -> dict:
    """Linear probes of every attribute in each space, bg/tg probe, salient norms, PCA plots.

    Writes ``out_dir/evaluation.json`` (naming the protocol) and ``out_dir/plots/*.png``; returns the dict.
    """
    import pandas as pd

    path = Path(embeddings)
    if not path.is_file():
        raise MedclError(f"{path}: embeddings file not found")
    return evaluate_table(pd.read_csv(path), out_dir, seed, source=str(path), protocol=protocol)


def _pca_plots(spaces: dict[str, np.ndarray], table, attrs: list[str], out: Path) -> list[Path]:
    """2D PCA of each space coloured by group and by each attribute (PNG; no pyplot state touched)."""
    import pandas as pd
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    from medcl.utils import atomic_write_path

    written = []
    for space, x in spaces.items():
        xy = PCA(n_components=2, random_state=0).fit_transform(x)
        for colour in ["group", *attrs]:
            values = table[colour]
            numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            codes = values.to_numpy(dtype=float) if numeric else values.astype("category").cat.codes.to_numpy()
            fig = Figure(figsize=(4, 4))
            ax = fig.subplots()
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=codes, s=6, cmap="tab10" if values.nunique() <= 10 else "viridis")
            ax.set(title=f"{space} space, coloured by {colour}", xlabel="PC1", ylabel="PC2")
            fig.colorbar(sc, ax=ax)
            path = out / f"pca_{space}_{colour}.png"
            with atomic_write_path(path) as tmp:
                fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
            written.append(path)
    return written
