"""Report pages and report.json from hand-built predictions: content, escaping, failures, files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from medcl.explain.report import ECGInput, format_meta, safe_stem, sorted_findings, write_report_batch
from medcl.pipelines.bench.report import synthetic_batch


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    data = synthetic_batch(2, seed=3)
    preds = data["predictions"]
    rng = np.random.default_rng(0)
    attributions = {(r["record"], f["code"]): rng.normal(size=(12, 1000)).astype(np.float32)
                    for r in preds["records"] for f in r["findings"]}
    out = tmp_path_factory.mktemp("synthetic_reports")
    index = write_report_batch(preds, data["ecgs"], out, attributions=attributions, sources=data["sources"].get,
                               failures=[{"record": "broken/rec9", "error": "broken/rec9.hea: WFDB header not found"}])
    return data, out, index


def test_one_page_per_record_with_index_and_json(synthetic):
    data, out, index = synthetic
    assert index == out / "index.html"
    assert sorted(p.name for p in out.glob("*.html")) == ["00000.html", "00001.html", "index.html"]
    report = json.loads((out / "report.json").read_text())
    assert "not for diagnosis" in report["intended_use"].lower() or "must not be used" in report["intended_use"]
    entries = {e["record"]: e for e in report["records"]}  # records named without folders
    assert entries["rec9"]["status"] == "error" and "header not found" in entries["rec9"]["error"]
    for rec in data["predictions"]["records"]:
        e = entries[Path(rec["record"]).name]
        assert e["status"] == "ok" and e["html"] == f"{rec['record_id']}.html"
        probs = [f["probability"] for f in e["findings"]]
        assert probs == sorted(probs, reverse=True)
        assert {f["code"] for f in e["findings"]} == {f["code"] for f in rec["findings"]}
        for f in e["findings"]:
            contributions = [p["contribution"] for p in f["prototypes"]]
            assert len(contributions) == 3 and contributions == sorted(contributions, reverse=True)
            assert sum(f["attribution"]["lead_share"].values()) == pytest.approx(1.0, abs=1e-3)


def test_page_is_self_contained_and_has_every_finding(synthetic):
    data, out, _ = synthetic
    rec = data["predictions"]["records"][0]
    html = (out / f"{rec['record_id']}.html").read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    sources = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    n = len(rec["findings"])
    assert len(sources) == 1 + n * (1 + 3)  # ECG + per finding: attribution strip and 3 prototypes
    for f in rec["findings"]:
        assert f'data-code="{f["code"]}"' in html
    assert "How to read this report" in html and "Research use only" in html
    assert "@media print" in html and "size: landscape" in html


def test_index_lists_reports_and_failures(synthetic):
    _, out, _ = synthetic
    html = (out / "index.html").read_text()
    assert 'href="00000.html"' in html and 'href="00001.html"' in html
    assert "failed: broken/rec9.hea: WFDB header not found" in html
    assert html.count("<tr class=") == 3


def test_header_text_is_escaped(tmp_path):
    data = synthetic_batch(1, seed=0)
    preds = data["predictions"]
    rec = preds["records"][0]
    rec["record_id"] = 'evil"<b>id</b>'
    rec["findings"][0]["description"] = "<img src=x onerror=alert(1)>"
    key = rec["record"]
    ecg = data["ecgs"][key]
    bad = ['<script>alert("x")</script>', "Note: 'quoted' & \"double\""]
    write_report_batch(preds, {key: ECGInput(key, ecg.signal, ecg.fs, bad)}, tmp_path)
    html = (tmp_path / "evil_b_id_b.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>id</b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&#39;quoted&#39; &amp; &#34;double&#34;" in html
    assert "evil&#34;&lt;b&gt;id&lt;/b&gt;" in html


def test_missing_signal_is_a_listed_failure_not_a_crash(tmp_path):
    data = synthetic_batch(2, seed=0)
    keys = list(data["ecgs"])
    write_report_batch(data["predictions"], {keys[1]: data["ecgs"][keys[1]]}, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    status = {e["record"]: e["status"] for e in report["records"]}
    assert status == {Path(keys[0]).name: "error", Path(keys[1]).name: "ok"}
    assert not (tmp_path / "00000.html").exists() and (tmp_path / "00001.html").exists()


def test_helpers():
    taken: set[str] = set()
    assert safe_stem("HR06000", taken) == "HR06000"
    assert safe_stem("hr06000", taken) == "hr06000_2"  # case-insensitive file systems
    assert safe_stem("../a b", taken) == "a_b"
    assert format_meta({"age": 59, "sex": "F", "fs": 100, "duration_s": 10}) == [
        ("Age", "59 years"), ("Sex", "female"), ("Sampling rate", "100 Hz"), ("Duration", "10.0 s")]
    assert format_meta({})[0] == ("Age", "unknown")
    rec = {"findings": [{"probability": 0.2, "prototypes": []},
                        {"probability": 0.9, "prototypes": [{"contribution": c} for c in (0.1, 0.5, 0.3, 0.4)]}]}
    out = sorted_findings(rec)
    assert [f["probability"] for f in out] == [0.9, 0.2]
    assert [p["contribution"] for p in out[0]["prototypes"]] == [0.5, 0.4, 0.3]
