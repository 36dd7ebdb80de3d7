"""ECG measurements (HR, PR, QRS, QT, QTc, quality), label names, path redaction and the model card.

Intervals are checked on synthetic 12-lead ECGs with programmed P onset, QRS onset/width and T end
(tolerances: heart rate 1 bpm, PR 20 ms, QRS 20 ms, QT 30 ms, QTc from the measured QT and RR),
and on real records against their rhythm labels (sinus bradycardia < 60 bpm, tachycardia > 100).
"""

from __future__ import annotations

import glob
import math

import numpy as np
import pytest

from medcl.explain.ecg_measurements import measure
from medcl.explain.model_card import SYNTHETIC_BANNER, UNKNOWN_BANNER, model_card
from medcl.explain.report import public_name, redact_paths, visible_comments
from medcl.io.ecg import read_ecg
from medcl.io.ecg_labels import describe_codes

FS = 250


def synthetic_ecg(hr: float, pr: float, qrs: float, qt: float, fs: int = FS, seed: int = 0,
                  p_amp: float = 0.15) -> np.ndarray:
    """(12, 10 s) ECG with exact wave boundaries: P (90 ms half-sine) starting ``pr`` before QRS onset,
    a Q-R-S triangle complex of width ``qrs``, a 180 ms half-sine T ending ``qt`` after QRS onset."""
    t = np.arange(10 * fs) / fs
    x = np.zeros_like(t)

    def half_sine(start: float, width: float, amp: float) -> None:
        m = (t >= start) & (t < start + width)
        x[m] += amp * np.sin(np.pi * (t[m] - start) / width)

    def triangle(a: float, b: float, c: float, amp: float) -> None:
        m = (t >= a) & (t < b)
        x[m] += amp * (t[m] - a) / (b - a)
        m = (t >= b) & (t < c)
        x[m] += amp * (c - t[m]) / (c - b)

    for q in np.arange(0.4, 9.4, 60 / hr):
        half_sine(q - pr, 0.09, p_amp)
        triangle(q, q + 0.15 * qrs, q + 0.3 * qrs, -0.1)
        triangle(q + 0.3 * qrs, q + 0.5 * qrs, q + 0.75 * qrs, 1.2)
        triangle(q + 0.75 * qrs, q + 0.87 * qrs, q + qrs, -0.25)
        half_sine(q + qt - 0.18, 0.18, 0.3)
    rng = np.random.default_rng(seed)
    gains = rng.uniform(-1.0, 1.5, size=12)
    gains[1] = 1.0
    return gains[:, None] * x[None] + rng.normal(0, 0.005, (12, t.size))


@pytest.mark.parametrize(("hr", "pr", "qrs", "qt"), [
    (60, 0.16, 0.08, 0.42), (100, 0.16, 0.08, 0.34), (60, 0.20, 0.14, 0.44), (75, 0.12, 0.12, 0.38),
])
def test_programmed_intervals_within_tolerance(hr, pr, qrs, qt):
    m = measure(synthetic_ecg(hr, pr, qrs, qt), FS)
    assert m.heart_rate_bpm == pytest.approx(hr, abs=1)
    assert m.pr_ms == pytest.approx(1000 * pr, abs=20)
    assert m.qrs_ms == pytest.approx(1000 * qrs, abs=20)
    assert m.qt_ms == pytest.approx(1000 * qt, abs=30)
    assert m.qtc_ms == pytest.approx(m.qt_ms / math.sqrt(60 / hr), abs=2)  # Bazett on the measured QT
    assert m.quality == "good" and m.flat_leads == []


def test_wide_qrs_is_told_apart_and_missing_p_is_reported():
    narrow = measure(synthetic_ecg(70, 0.16, 0.08, 0.40), FS).qrs_ms
    wide = measure(synthetic_ecg(70, 0.16, 0.15, 0.40), FS).qrs_ms
    assert narrow < 110 <= wide
    no_p = measure(synthetic_ecg(70, 0.16, 0.08, 0.40, p_amp=0.0), FS)
    assert no_p.pr_ms is None and no_p.qrs_ms == pytest.approx(80, abs=20)  # e.g. atrial fibrillation
    flat = measure(np.zeros((12, 10 * FS)), FS)
    assert flat.heart_rate_bpm is None and len(flat.flat_leads) == 12 and flat.quality == "not assessable"


def test_noise_only_is_poor_quality():
    noise = np.random.default_rng(1).normal(0, 0.3, (12, 10 * FS))
    assert measure(noise, FS).quality in ("poor", "not assessable")


def test_real_rhythm_labels_agree_with_heart_rate(shared_data):
    """Real CinC/SPH records labelled sinus bradycardia (426177001) or sinus tachycardia (427084000)."""
    files = sorted(glob.glob(str(shared_data / "ecg" / "cinc2021-sample" / "*.hea")))
    files += sorted(glob.glob(str(shared_data / "ecg" / "challenge-mix" / "*" / "*.hea")))
    files += sorted(glob.glob(str(shared_data / "ecg" / "challenge-mix" / "tuijalei-SPH" / "*.h5")))
    checked = 0
    for f in files:
        rec = read_ecg(f, fs=FS, highpass=0.5)
        brady, tachy = "426177001" in rec.dx_snomed, "427084000" in rec.dx_snomed
        if not (brady or tachy):
            continue
        m = measure(rec.signal, FS)
        assert (m.heart_rate_bpm < 60) if brady else (m.heart_rate_bpm > 100), (rec.record_id, m)
        assert m.qrs_ms is not None and 60 <= m.qrs_ms <= 200
        checked += 1
    assert checked >= 10


def test_label_names_from_the_packaged_tables():
    labels = describe_codes(["426783006", "164934002", "999"], ["SR"])
    assert [(x["system"], x["code"], x["name"]) for x in labels] == [
        ("SNOMED-CT", "426783006", "sinus rhythm"), ("SNOMED-CT", "164934002", "t wave abnormal"),
        ("SNOMED-CT", "999", "code not in medcl's SNOMED-CT table"), ("SCP-ECG", "SR", "sinus rhythm"),
    ]


def test_paths_are_redacted():
    assert redact_paths("/work/data/ecg/rec1.hea: WFDB header not found") == "rec1.hea: WFDB header not found"
    assert redact_paths("C:\\data\\a\\x.xml: malformed XML") == "x.xml: malformed XML"
    assert redact_paths("leads I/II derived; 10 mm/mV") == "leads I/II derived; 10 mm/mV"
    assert public_name("/abs/path/HR06000") == "HR06000"
    assert visible_comments(["Dx: 426783006", "Age: 59", "path /a/b/c.hea"]) == ["Age: 59", "path c.hea"]


def test_model_card_from_checkpoint_and_fallbacks():
    synth = model_card({"model_card": {"training_data": [{"name": "s", "cases": 4, "synthetic": True}],
                                       "synthetic_only": True, "validation": {"macro_auroc": 0.91},
                                       "date": "2026-12-01"}})
    assert synth["banner"] == SYNTHETIC_BANNER and synth["validation_macro_auroc"] == 0.91 and synth["recorded"]
    real = model_card({"model_card": {"synthetic_only": False}})
    assert real["banner"] is None
    missing = model_card({"head": "fusion"})
    assert missing["banner"] == UNKNOWN_BANNER and missing["synthetic"] is None
    assert missing["training_data"] == "not recorded in the checkpoint" and not missing["recorded"]
