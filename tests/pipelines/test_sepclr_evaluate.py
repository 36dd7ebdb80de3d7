"""Evaluation protocols on a hand-built embedding table, checked against scikit-learn called directly.

The table: ``texture`` (common, on every row) is written into S with opposite signs for background
and target rows, so it is linearly readable from S among targets only (the leakage the paper's
target-only probes measure, which an all-rows probe hides). ``zs`` (projection head) carries the
group, ``s`` (encoder) does not: the ``paper`` bg/tg probe must read the projection columns.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, mean_absolute_error

from medcl.errors import MedclError
from medcl.pipelines.sepclr_evaluate import evaluate, evaluate_table


def _table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.repeat([0, 1], n // 2)
    texture = rng.integers(0, 2, n)
    digit = np.where(group == 1, rng.integers(0, 2, n), -1)
    age = rng.uniform(20, 80, n)
    sign = np.where(group == 1, 1.0, -1.0)  # texture direction flips between groups in S
    s = rng.normal(size=(n, 3))
    s[:, 0] += 3 * sign * (2 * texture - 1)
    s[:, 1] += np.where(group == 1, 3 * (2 * digit - 1), 0.0)
    s[:, 2] += np.where(group == 1, (age - 50) / 10, 0.0)
    c = rng.normal(size=(n, 2))
    c[:, 0] += 3 * (2 * texture - 1)
    zs = rng.normal(size=(n, 2))
    zs[:, 0] += 4 * (2 * group - 1)
    zc = rng.normal(size=(n, 2))
    table = pd.DataFrame({"group": np.where(group == 1, "target", "background"), "texture": texture,
                          "digit": np.where(digit >= 0, digit, np.nan), "age": age,
                          "split": np.where(rng.random(n) < 0.5, "train", "test")})  # fmt: skip
    for prefix, x in (("c", c), ("s", s), ("zc", zc), ("zs", zs)):
        for i in range(x.shape[1]):
            table[f"{prefix}_{i}"] = x[:, i]
    return table


def _row(result: dict, attribute: str, space: str, rows: str, metric: str | None = None) -> dict:
    found = [r for r in result["probes"] if (r["attribute"], r["space"], r["rows"]) == (attribute, space, rows)]
    found = [r for r in found if metric is None or r["metric"] == metric]
    assert len(found) == 1, found
    return found[0]


def test_paper_protocol_fits_target_rows_only_and_matches_sklearn():
    table = _table()
    result = evaluate_table(table, None, protocol="paper")
    assert result["protocol"] == "paper" and result["bg_tg_features"] == "projection"
    assert {r["rows"] for r in result["probes"]} == {"target"}

    tg = (table.group == "target").to_numpy()
    tr, te = tg & (table.split == "train").to_numpy(), tg & (table.split == "test").to_numpy()
    s = table[["s_0", "s_1", "s_2"]].to_numpy()
    expected = accuracy_score(table.texture[te], LogisticRegression(random_state=0).fit(s[tr], table.texture[tr]).predict(s[te]))
    texture_s = _row(result, "texture", "salient", "target")
    assert texture_s["metric"] == "accuracy" and texture_s["score"] == pytest.approx(expected, abs=1e-12)
    assert texture_s["score"] > 0.9  # the leak into S is found among targets
    majority = table.texture[tr].mode()[0]
    assert texture_s["chance"] == pytest.approx(np.mean(table.texture[te] == majority))

    age = _row(result, "age", "salient", "target")
    pred = LinearRegression().fit(s[tr], table.age[tr]).predict(s[te])
    assert age["metric"] == "mae" and age["score"] == pytest.approx(mean_absolute_error(table.age[te], pred), abs=1e-9)
    assert age["score"] < 0.5 * age["chance"]

    zs = table[["zs_0", "zs_1"]].to_numpy()
    all_tr, all_te = (table.split == "train").to_numpy(), (table.split == "test").to_numpy()
    y = tg.astype(int)
    expected_bg = accuracy_score(y[all_te], LogisticRegression(random_state=0).fit(zs[all_tr], y[all_tr]).predict(zs[all_te]))
    assert result["bg_tg"]["salient"] == pytest.approx(expected_bg, abs=1e-12) and expected_bg > 0.95
    assert result["leakage"]["texture"]["expected_space"] == "common"
    assert result["leakage"]["texture"]["excess_over_chance"] > 0.3


def test_medcl_protocol_reports_all_rows_and_target_rows():
    table = _table()
    result = evaluate_table(table, None, protocol="medcl")
    assert result["protocol"] == "medcl" and result["bg_tg_features"] == "encoder"
    all_rows = _row(result, "texture", "salient", "all")
    target_rows = _row(result, "texture", "salient", "target")
    assert all_rows["metric"] == target_rows["metric"] == "balanced_accuracy"
    assert all_rows["score"] < 0.7 < 0.9 < target_rows["score"]  # all rows hide the leak; target rows show it
    assert [r["rows"] for r in result["probes"] if r["attribute"] == "digit"] == ["target", "target"]
    assert result["bg_tg"]["salient"] < 0.75  # encoder s does not carry the group; zs does (paper reads zs)
    assert {r["metric"] for r in result["probes"] if r["attribute"] == "age"} == {"r2", "mae"}


def test_paper_needs_projection_columns_and_names_the_file(tmp_path):
    table = _table().drop(columns=["zc_0", "zc_1", "zs_0", "zs_1"])
    path = tmp_path / "embeddings.csv"
    table.to_csv(path, index=False)
    with pytest.raises(MedclError, match=r"embeddings.csv: protocol 'paper' .* projection-head outputs"):
        evaluate(path, tmp_path / "out", protocol="paper")
    assert not (tmp_path / "out" / "evaluation.json").exists()
    evaluate(path, tmp_path / "out", protocol="medcl")
    assert json.loads((tmp_path / "out" / "evaluation.json").read_text())["protocol"] == "medcl"


def test_bench_summary_reads_each_protocol_rows():
    from medcl.pipelines.bench.sepclr import format_table, summary_table

    table = _table()
    result = {p: evaluate_table(table, None, protocol=p) for p in ("paper", "medcl")}
    rows = summary_table({"texdigits": {"sepclr": {**result, "train_seconds": 1.0}}})
    by_protocol = {r["protocol"]: r for r in rows}
    assert by_protocol["paper"]["common_on_S"] == round(_row(result["paper"], "texture", "salient", "target")["score"], 3)
    assert by_protocol["paper"]["common_on_S"] > 0.9 > 0.7 > by_protocol["medcl"]["common_on_S"]  # all rows
    assert by_protocol["paper"]["bg_tg_S"] == round(result["paper"]["bg_tg"]["salient"], 3)
    text = format_table(rows)
    assert text.count("\n") == 3 and "| texdigits | sepclr | paper |" in text
