"""Reports opened in headless Chromium: offline load, no console errors, pixels of the figures.

Chromium is driven over the DevTools pipe (``medcl.explain.browser``); the tests skip with a
reason when no Chromium is installed (``make browser`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medcl.explain.browser import Chromium, find_chromium
from medcl.explain.ecg_attribution import integrated_gradients
from medcl.explain.report import write_report_batch
from medcl.pipelines.bench.report import _branch_of, standin_net, synthetic_batch
from medcl.pipelines.ecg_report import expand_records, read_inputs, source_lookup

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="headless Chromium not installed (run `make browser` or apt-get install chromium)"
)
REAL = ("HR06000", "HR06001", "E07500", "E07501")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _real_predictions(records: list[str], signals: dict) -> tuple[dict, dict]:
    """Hand-built predictions for real records (findings = header labels, prototypes = other records)."""
    from medcl.io.ecg import read_ecg

    branch = _branch_of()
    labels = list(branch)
    out, rng = [], np.random.default_rng(0)
    for i, rec in enumerate(records):
        ecg = read_ecg(rec, fs=100)
        codes = ecg.scp_codes or ["NORM"]
        findings = []
        for code in codes:
            protos = [{"branch": branch[code], "index": k, "class": code, "contribution": 0.9 - 0.2 * k,
                       "similarity": 0.8, "weight": 1.0, "source_record": records[(i + k + 1) % len(records)],
                       "source_labels": ["NORM"],
                       "window": {"start": 300, "end": 360, "start_s": 3.0, "end_s": 3.6}} for k in range(3)]
            findings.append({"code": code, "description": f"statement {code}", "probability": float(rng.uniform(0.5, 1)),
                             "threshold": 0.5, "branch": branch[code], "prototypes": protos})
        meta = {"age": ecg.age, "sex": ecg.sex, "fs": 100.0, "duration_s": 10.0}
        out.append({"record": rec, "record_id": ecg.record_id, "meta": meta, "probabilities": {}, "findings": findings})
    preds = {"labels": labels, "thresholds": dict.fromkeys(labels, 0.5), "records": out}
    index = {c: k for k, c in enumerate(labels)}
    pairs = [(i, r["record"], f["code"]) for i, r in enumerate(out) for f in r["findings"]]
    torch.manual_seed(0)
    batch = torch.from_numpy(np.stack([signals[r] for r in records]))
    attr = integrated_gradients(standin_net(len(labels)), batch, [p[0] for p in pairs], [index[p[2]] for p in pairs],
                                n_steps=8)
    return preds, {(rec, code): a for (_, rec, code), a in zip(pairs, attr)}


@pytest.fixture(scope="module")
def reports(shared_data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("browser_reports")
    folder = shared_data / "ecg" / "cinc2021-sample"
    records = expand_records([folder / f"{name}.hea" for name in REAL])
    ecgs, signals, failures = read_inputs(records)
    assert not failures
    preds, attributions = _real_predictions(records, signals)
    syn = synthetic_batch(2, seed=5)
    rng = np.random.default_rng(1)
    for r in syn["predictions"]["records"]:
        preds["records"].append(r)
        attributions.update({(r["record"], f["code"]): rng.normal(size=(12, 1000)) for f in r["findings"]})
    ecgs.update(syn["ecgs"])
    lookup = source_lookup([])
    write_report_batch(preds, ecgs, out, attributions=attributions,
                       sources=lambda s: syn["sources"].get(s) or lookup(s))
    return out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def chrome():
    with Chromium(timeout=60) as browser:
        yield browser


def _check_figure_pixels(png: bytes, pink_min: float, dark_min: float) -> None:
    px = _pixels(png)
    pink = (px[..., 0] > 230) & (px[..., 1] < 248) & (px[..., 0] - px[..., 1] > 6)
    dark = px.sum(axis=-1) < 200
    assert pink.mean() > pink_min, f"ECG paper covers only {pink.mean():.2%} of the image"
    assert dark.mean() > dark_min, f"traces cover only {dark.mean():.3%} of the image"


def test_every_report_loads_offline_and_shows_ecg_and_findings(reports, chrome):
    out, report = reports
    entries = [e for e in report["records"] if e["status"] == "ok"]
    assert len(entries) == len(REAL) + 2
    for entry in entries:
        page = chrome.open(out / entry["html"], width=1300, height=900)
        log = page.log()
        assert log.console_errors == [], entry["html"]
        assert log.network_requests(page.url) == [], entry["html"]
        state = page.evaluate(
            "({images: [...document.images].map(i => i.complete && i.naturalWidth > 0),"
            " findings: [...document.querySelectorAll('section.finding')].map(s => s.dataset.code),"
            " protos: [...document.querySelectorAll('section.finding')].map(s => s.querySelectorAll('.proto img').length),"
            " scripts: document.scripts.length})"
        )
        assert all(state["images"]) and state["scripts"] == 0
        assert state["findings"] == [f["code"] for f in entry["findings"]]
        assert state["protos"] == [3] * len(entry["findings"])
        _check_figure_pixels(page.screenshot("#ecg-image"), pink_min=0.5, dark_min=0.003)
        top = _pixels(page.screenshot())
        assert (top.sum(axis=-1) < 760).mean() > 0.2  # the viewport is not blank (paper, text)
        finding = page.screenshot("section.finding")
        _check_figure_pixels(finding, pink_min=0.15, dark_min=0.002)
        red_or_blue = np.abs(_pixels(finding)[..., 0] - _pixels(finding)[..., 2]) > 60
        assert red_or_blue.mean() > 0.005  # the attribution heat strip is drawn


def test_header_script_renders_as_text(chrome, tmp_path):
    from medcl.explain.report import ECGInput

    data = synthetic_batch(1, seed=0)
    key = data["predictions"]["records"][0]["record"]
    ecg = data["ecgs"][key]
    comment = '<script>document.title="pwned"</script> "quoted" \'single\''
    write_report_batch(data["predictions"], {key: ECGInput(key, ecg.signal, ecg.fs, [comment])}, tmp_path)
    page = chrome.open(tmp_path / "00000.html")
    assert page.evaluate("document.title") == "ECG report 00000"
    assert page.evaluate("document.querySelector('#comments li').textContent") == comment
    assert page.evaluate("document.scripts.length") == 0
    assert page.log().console_errors == []


def test_index_table_sorts_and_links(reports, chrome):
    out, report = reports
    page = chrome.open(out / "index.html")
    assert page.log().console_errors == []
    hrefs = page.evaluate("[...document.querySelectorAll('#records a')].map(a => a.getAttribute('href'))")
    assert sorted(hrefs) == sorted(e["html"] for e in report["records"] if e["status"] == "ok")
    page.evaluate("document.querySelectorAll('#records th')[5].click()")
    values = page.evaluate("[...document.querySelectorAll('#records tbody tr')].map(r => parseFloat(r.cells[5].dataset.v))")
    assert values == sorted(values)
    page.evaluate("document.querySelectorAll('#records th')[5].click()")
    values = page.evaluate("[...document.querySelectorAll('#records tbody tr')].map(r => parseFloat(r.cells[5].dataset.v))")
    assert values == sorted(values, reverse=True)


def test_network_attempts_and_errors_are_detected(chrome, tmp_path):
    """The checks above can fail: a remote image is logged as a CSP violation or a request."""
    csp = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:\">"
    (tmp_path / "csp.html").write_text(f"<html><head>{csp}</head><body><img src='http://192.0.2.1/x.png'></body></html>")
    (tmp_path / "open.html").write_text("<html><body><img src='http://192.0.2.1/x.png'>"
                                        "<script>console.error('boom')</script></body></html>")
    blocked = chrome.open(tmp_path / "csp.html").log()
    assert any("Content Security Policy" in m for m in blocked.console_errors)
    page = chrome.open(tmp_path / "open.html")
    log = page.log()
    assert "http://192.0.2.1/x.png" in log.network_requests(page.url)
    assert "boom" in log.console_errors


def test_print_to_pdf_is_landscape(reports, chrome, tmp_path):
    import re

    from medcl.explain.browser import print_pdf

    out, report = reports
    first = next(e for e in report["records"] if e["status"] == "ok")
    pdf = print_pdf(out / first["html"], tmp_path / "r.pdf", chrome).read_bytes()
    assert pdf.startswith(b"%PDF")
    boxes = [(float(w), float(h)) for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)]
    assert boxes and all(w > h for w, h in boxes)  # every page landscape
