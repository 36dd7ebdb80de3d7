"""Side-by-side timing machinery: interleaved order, medians/spreads, ratios that are the division of the
printed medians, and a forward comparison of equal work (same outputs on both sides)."""

from __future__ import annotations

import pytest

from medcl.pipelines.bench import timing


def test_interleaved_alternates_the_order_of_the_sides():
    calls: list[str] = []
    timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a b / b a / a b


def test_summary_and_ratio_by_hand():
    s = timing.summary([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["runs"]) == (2.5, 1.0, 10.0, [3.0, 1.0, 2.0, 10.0])
    rates = timing.rate_summary([0.5, 0.25, 1.0], per_call=32)  # 64, 128, 32 samples/s
    assert (rates["median"], rates["min"], rates["max"]) == (64.0, 32.0, 128.0)
    assert timing.ratio({"median": 96.0}, rates) == 1.5


def test_table_prints_median_and_spread():
    text = timing.format_table([{"figure": "x", "unit": "samples/s", "reference": timing.summary([1.0, 2.0, 4.0]),
                                 "medcl": timing.summary([3.0, 3.0, 6.0]), "ratio": 1.5}])
    assert "2 [1-4]" in text and "3 [3-6]" in text and text.splitlines()[0].split() == [
        "figure", "unit", "reference", "medcl", "ratio"]


@pytest.mark.filterwarnings("ignore")
def test_forward_side_by_side_is_equal_work_and_its_ratio_is_the_medians_division():
    import torch

    from medcl.pipelines.bench.ecg import forward_side_by_side

    torch.set_num_threads(2)
    res = forward_side_by_side(batch=2, repeats=3)
    assert res["max_abs_diff"] < 1e-4  # the reference nets and medcl's net give the same fused logits
    for side in ("reference", "medcl"):
        r = res["records_per_s"][side]
        assert len(r["runs"]) == 3 and r["min"] <= r["median"] <= r["max"]
    assert res["speedup"] == round(res["records_per_s"]["medcl"]["median"] / res["records_per_s"]["reference"]["median"], 3)
