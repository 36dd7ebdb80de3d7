"""Clinician view of the report in headless Chromium: label names, measurements, model card, no paths.

Reports are written for ECGs in four formats (WFDB, SPH HDF5, DICOM waveform, an 8-lead GE MUSE
XML written here) plus a synthetic ECG with programmed intervals saved as ``.npy``; every input,
prototype source and failure is given by its absolute path, and none may appear in the pages.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from test_ecg_measurements import synthetic_ecg  # same folder (pytest prepend import mode)

from medcl.explain.browser import Chromium, find_chromium
from medcl.explain.model_card import model_card
from medcl.explain.report import write_report_batch
from medcl.pipelines.ecg_report import read_inputs, source_lookup

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="headless Chromium not installed (`make browser`)")
EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
CARD = {"model_card": {"description": "synthetic PTB-XL-shaped ECGs (medcl data synth ecg) 'synth-400': "
                                      "320 training records",
                       "training_data": [{"name": "synth-400", "cases": 320, "annotated": [], "synthetic": True}],
                       "n_training_cases": 320, "synthetic_only": True, "validation": {"macro_auroc": 0.9123},
                       "n_validation_cases": 40, "date": "2026-12-01",
                       "intended_use": "Research and education; not a medical device."}}


def _muse(path: Path, data: np.ndarray) -> Path:
    leads = "".join(
        f"<LeadData><LeadAmplitudeUnitsPerBit>1</LeadAmplitudeUnitsPerBit><LeadAmplitudeUnits>MICROVOLTS"
        f"</LeadAmplitudeUnits><LeadID>{n}</LeadID><WaveFormData>"
        f"{base64.b64encode(np.round(row * 1000).astype('<i2').tobytes()).decode()}</WaveFormData></LeadData>"
        for n, row in zip(EIGHT, data)
    )
    path.write_text("<RestingECG><Waveform><WaveformType>Rhythm</WaveformType><SampleBase>250</SampleBase>"
                    f"{leads}</Waveform></RestingECG>")
    return path


def _predictions(records: list[str], ecgs: dict) -> dict:
    """One finding per record whose prototypes come from the other records (absolute paths)."""
    out = []
    for i, rec in enumerate(records):
        protos = [{"branch": "morphology", "index": k, "class": "NORM", "contribution": 0.5 - 0.1 * k,
                   "similarity": 0.7, "weight": 1.0, "source_record": records[(i + k + 1) % len(records)],
                   "source_labels": ["NORM"], "window": {"start": 300, "end": 360, "start_s": 3.0, "end_s": 3.6}}
                  for k in range(3)]
        out.append({"record": rec, "record_id": Path(rec).stem, "meta": {"fs": 250.0, "duration_s": 10.0},
                    "probabilities": {}, "findings": [{"code": "NORM", "description": "normal ECG",
                                                       "probability": 0.8, "threshold": 0.5, "branch": "global",
                                                       "prototypes": protos}]})
    return {"labels": ["NORM"], "thresholds": {"NORM": 0.5}, "records": out}


@pytest.fixture(scope="module")
def written(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clinician")
    np.save(tmp / "programmed.npy", synthetic_ecg(75, 0.16, 0.12, 0.40))
    muse = _muse(tmp / "muse8.xml", synthetic_ecg(60, 0.18, 0.08, 0.42, seed=2)[[0, 1, *range(6, 12)]])
    (tmp / "broken.xml").write_text("<AnnotatedECG>")
    records = [str(shared_data / "ecg" / "cinc2021-sample" / "HR06000"),
               str(shared_data / "ecg" / "challenge-mix" / "tuijalei-SPH" / "SPH00001.h5"),
               get_testdata_file("waveform_ecg.dcm"), str(muse), str(tmp / "programmed.npy"), str(tmp / "broken.xml")]
    ecgs, _, failures = read_inputs(records, source_fs=250, source_leads=None)
    # the .npy needs its lead names: read it on its own like `--leads` would
    more, _, _ = read_inputs([records[4]], source_fs=250,
                             source_leads=["I", "II", "III", "aVR", "aVL", "aVF", *EIGHT[2:]])
    ecgs.update(more)
    failures = [f for f in failures if f["record"] != records[4]]
    assert [Path(f["record"]).name for f in failures] == ["broken.xml"]
    out = tmp / "reports"
    lookup = source_lookup([])
    write_report_batch(_predictions(list(ecgs), ecgs), ecgs, out, sources=lookup, failures=failures,
                       card=model_card(CARD), extra={"checkpoint": "model.ckpt"})
    roots = [str(shared_data.resolve()), str(tmp), str(Path(records[2]).parent)]
    return out, json.loads((out / "report.json").read_text()), roots


@pytest.fixture(scope="module")
def chrome():
    with Chromium(timeout=60) as browser:
        yield browser


def _page_state(chrome, path: Path) -> dict:
    page = chrome.open(path, width=1300, height=900)
    assert page.log().console_errors == []
    return page.evaluate(
        "({html: document.documentElement.outerHTML, banner: document.querySelector('#model-banner')?.innerText,"
        " labels: document.querySelector('#record-labels').innerText,"
        " codes: [...document.querySelectorAll('#record-labels small.code')].map(s => s.innerText),"
        " m: Object.fromEntries([...document.querySelectorAll('#measurements td')].map(t => [t.dataset.key, t.innerText])),"
        " card: document.querySelector('#model-card').innerText,"
        " derived: document.querySelector('#derived-leads')?.innerText,"
        " sources: [...document.querySelectorAll('.proto dd')].map(d => d.innerText)})"
    )


def test_label_names_measurements_and_model_card_are_shown(written, chrome):
    out, report, _ = written
    pages = {e["record"]: e for e in report["records"] if e["status"] == "ok"}
    assert set(pages) == {"HR06000", "SPH00001.h5", "waveform_ecg.dcm", "muse8.xml", "programmed.npy"}
    sph = _page_state(chrome, out / pages["SPH00001.h5"]["html"])
    assert "sinus bradycardia" in sph["labels"] and "sinus arrhythmia" in sph["labels"]
    assert sph["codes"] == ["SNOMED-CT 426177001", "SNOMED-CT 427393009"]
    assert "synthetic ECGs only" in sph["banner"]
    assert "0.912 on 40 validation ECGs" in sph["card"] and "(synthetic data)" in sph["card"]
    assert float(sph["m"]["heart_rate_bpm"].split()[0]) < 60  # labelled sinus bradycardia
    hr = _page_state(chrome, out / pages["HR06000"]["html"])
    assert "t wave abnormal" in hr["labels"] and "sinus rhythm" in hr["labels"] and "Dx:" not in hr["html"]
    # programmed: 75 bpm, PR 160 ms, QRS 120 ms, QT 400 ms (tolerances 1 bpm / 20 / 20 / 30 ms)
    prog = _page_state(chrome, out / pages["programmed.npy"]["html"])
    values = {k: float(v.split()[0]) for k, v in prog["m"].items() if k != "quality"}
    assert values["heart_rate_bpm"] == pytest.approx(75, abs=1)
    assert values["pr_ms"] == pytest.approx(160, abs=20) and values["qrs_ms"] == pytest.approx(120, abs=20)
    assert values["qt_ms"] == pytest.approx(400, abs=30) and prog["m"]["quality"] == "good"
    assert "none stored in the file" in prog["labels"]
    muse = _page_state(chrome, out / pages["muse8.xml"]["html"])
    assert "III, aVR, aVL, aVF" in muse["derived"] and "derived from I and II" in muse["derived"]
    assert float(muse["m"]["qrs_ms"].split()[0]) == pytest.approx(80, abs=20)
    assert any(s.startswith("synth-400, record ") for s in muse["sources"])


def test_no_absolute_path_anywhere(written, chrome):
    out, report, roots = written
    texts = [p.read_text() for p in out.glob("*.html")] + [(out / "report.json").read_text()]
    for entry in report["records"]:
        if entry["status"] == "ok":
            texts.append(_page_state(chrome, out / entry["html"])["html"])  # as the browser renders it
    assert len(texts) == 5 + 1 + 1 + 5
    for text in texts:
        for root in roots:
            assert root not in text
        assert not re.search(r"(?<![\w>])/(?:work|tmp|home|root|Users|usr|var)/", text)
    failed = [e for e in report["records"] if e["status"] == "error"]
    assert [e["error"].split(":")[0] for e in failed] == ["broken.xml"]
    assert "failed: broken.xml: malformed XML" in (out / "index.html").read_text()
