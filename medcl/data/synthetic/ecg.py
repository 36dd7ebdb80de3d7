"""Synthetic 12-lead ECGs with controlled SCP labels, written as a PTB-XL-shaped folder.

Each record is a parametric PQRST model: every beat is a sum of Gaussian waves (P, Q, R, S, ST, T)
with per-lead amplitudes (in the spirit of McSharry et al., 2003, "A dynamical model for generating
synthetic electrocardiogram signals", without the ODE). One beat template per record is rendered and
placed at the R-peak times by an FFT convolution with an impulse train, vectorised over records.

Labels (real PTB-XL SCP codes) and the change that causes each:

* rhythm (exactly one): ``SR`` (60-95 bpm), ``STACH`` (105-140 bpm), ``SBRAD`` (38-55 bpm),
  ``AFIB`` (irregular RR, no P waves, 5-7 Hz fibrillatory waves);
* morphology (independent): ``IMI`` (ST elevation in II, III, aVF), ``AMI`` (ST elevation in
  V2-V4), ``INVT`` (inverted T in I, aVL, V5, V6), ``CLBBB`` (QRS widened in every lead);
* global: ``NORM`` (no morphology label and a sinus rhythm).

:func:`truth_mask` returns the (lead, sample) region where each label's change lives, for testing
that attributions concentrate there. Everything is deterministic from the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcl.errors import MedclError
from medcl.io.ecg import LEADS

FS = 500
DURATION_S = 10.0
N_SAMPLES = int(FS * DURATION_S)
RHYTHMS = ("SR", "STACH", "SBRAD", "AFIB")
MORPHOLOGY = ("IMI", "AMI", "INVT", "CLBBB")
LABELS = (*RHYTHMS, *MORPHOLOGY, "NORM")
"""Every label the generator can emit."""

_HR_RANGE = {"SR": (60, 95), "STACH": (105, 140), "SBRAD": (38, 55), "AFIB": (70, 120)}
_RHYTHM_P = (0.55, 0.15, 0.15, 0.15)
_MORPH_P = 0.25
_TEMPLATE_START_S = -0.4
_TEMPLATE_LEN_S = 1.2

# Waves: P, Q, R, S, ST, T. Offsets (s from the R peak) and widths (s) of the normal beat; the
# T offset grows with the RR interval (see _wave_geometry).
_WAVES = ("P", "Q", "R", "S", "ST", "T")
_OFFSET = np.array([-0.16, -0.025, 0.0, 0.03, 0.12, 0.0])
_WIDTH = np.array([0.025, 0.010, 0.012, 0.012, 0.04, 0.045])
# Normal per-lead amplitudes (mV), rows in LEADS order, columns in _WAVES order.
_AMP = np.array(
    [
        [0.10, -0.05, 0.80, -0.15, 0.0, 0.25],
        [0.15, -0.05, 1.10, -0.20, 0.0, 0.30],
        [0.05, -0.03, 0.40, -0.15, 0.0, 0.10],
        [-0.12, 0.05, -0.80, 0.15, 0.0, -0.25],
        [0.05, -0.05, 0.40, -0.10, 0.0, 0.10],
        [0.10, -0.04, 0.70, -0.15, 0.0, 0.20],
        [0.08, 0.00, 0.30, -0.90, 0.0, 0.10],
        [0.10, 0.00, 0.50, -1.20, 0.0, 0.35],
        [0.10, -0.02, 0.80, -0.80, 0.0, 0.40],
        [0.10, -0.05, 1.20, -0.50, 0.0, 0.40],
        [0.10, -0.07, 1.20, -0.30, 0.0, 0.30],
        [0.10, -0.06, 1.00, -0.20, 0.0, 0.25],
    ]
)


def _lead_mask(*names: str) -> np.ndarray:
    return np.isin(np.array(LEADS), names)


# Where each label's change lives: leads and a window relative to every R peak (None = whole record).
TRUTH_LEADS = {
    "IMI": _lead_mask("II", "III", "aVF"),
    "AMI": _lead_mask("V2", "V3", "V4"),
    "INVT": _lead_mask("I", "aVL", "V5", "V6"),
    "CLBBB": np.ones(12, bool),
    "AFIB": _lead_mask("II", "V1"),
}


@dataclass
class SyntheticECGs:
    """A batch of synthetic records.

    Attributes:
        signals: float32 ``(n, 12, 5000)`` mV at 500 Hz, leads in :data:`~medcl.io.ecg.LEADS` order.
        labels: per record, the SCP codes it carries.
        r_peaks_s: per record, the R-peak times in seconds (float array).
        t_offset_s: per record, the T-wave centre relative to the R peak (s).
        age: ``(n,)`` ages; sex: ``(n,)`` 0 = male, 1 = female (PTB-XL convention).
    """

    signals: np.ndarray
    labels: list[list[str]]
    r_peaks_s: list[np.ndarray]
    t_offset_s: np.ndarray
    age: np.ndarray
    sex: np.ndarray


def _draw_labels(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rhythm index ``(n,)`` and morphology flags ``(n, 4)``."""
    rhythm = rng.choice(len(RHYTHMS), size=n, p=_RHYTHM_P)
    morph = rng.random((n, len(MORPHOLOGY))) < _MORPH_P
    return rhythm, morph


def _rr_intervals(rng: np.random.Generator, rhythm: np.ndarray, n_beats: int) -> np.ndarray:
    """RR intervals ``(n, n_beats)`` in s: sinus rhythms +-3 %, AFIB +-35 % (irregularly irregular)."""
    lo = np.array([_HR_RANGE[r][0] for r in RHYTHMS])[rhythm]
    hi = np.array([_HR_RANGE[r][1] for r in RHYTHMS])[rhythm]
    mean_rr = 60.0 / rng.uniform(lo, hi)
    spread = np.where(rhythm == RHYTHMS.index("AFIB"), 0.35, 0.03)
    jitter = rng.uniform(-1.0, 1.0, (len(rhythm), n_beats)) * spread[:, None]
    return mean_rr[:, None] * (1.0 + jitter)


def _wave_geometry(rr: np.ndarray, morph: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-record wave offsets and widths ``(n, 6)``; T follows the RR interval, CLBBB widens QRS."""
    n = len(rr)
    offset = np.tile(_OFFSET, (n, 1))
    width = np.tile(_WIDTH, (n, 1))
    offset[:, 5] = 0.16 + 0.12 * rr.mean(axis=1)
    offset[:, 4] = 0.5 * (offset[:, 3] + offset[:, 5])
    wide = morph[:, MORPHOLOGY.index("CLBBB")]
    width[wide, 1:4] *= 2.8
    offset[wide, 3] += 0.04
    offset[wide, 1] -= 0.02
    return offset, width


def _amplitudes(rng: np.random.Generator, rhythm: np.ndarray, morph: np.ndarray) -> np.ndarray:
    """Per-record amplitudes ``(n, 12, 6)``: normal table x random gains, plus label changes."""
    n = len(rhythm)
    amp = _AMP[None] * rng.uniform(0.7, 1.3, (n, 12, 1)) * rng.uniform(0.85, 1.15, (n, 1, 6))
    amp[rhythm == RHYTHMS.index("AFIB"), :, 0] = 0.0
    for code in ("IMI", "AMI"):  # ST elevation of 0.2-0.35 mV in the territory's leads
        rows = morph[:, MORPHOLOGY.index(code)]
        amp[:, :, 4] += rng.uniform(0.2, 0.35, (n, 1)) * TRUTH_LEADS[code][None] * rows[:, None]
    invt = morph[:, MORPHOLOGY.index("INVT")][:, None] & TRUTH_LEADS["INVT"][None]
    amp[:, :, 5] = np.where(invt, -np.abs(amp[:, :, 5]) * rng.uniform(0.8, 1.4, (n, 12)), amp[:, :, 5])
    return amp


def _templates(amp: np.ndarray, offset: np.ndarray, width: np.ndarray, fs: int) -> np.ndarray:
    """Render one beat per record, ``(n, 12, L)``, starting at ``_TEMPLATE_START_S`` before R."""
    t = _TEMPLATE_START_S + np.arange(int(_TEMPLATE_LEN_S * fs)) / fs
    gauss = np.exp(-0.5 * ((t[None, None] - offset[..., None]) / width[..., None]) ** 2)
    return np.einsum("nlw,nwt->nlt", amp, gauss)


def _impulses(r_idx: np.ndarray, valid: np.ndarray, n_samples: int) -> np.ndarray:
    """Impulse trains ``(n, n_samples)`` with ones at the valid R-peak sample indices."""
    train = np.zeros((len(r_idx), n_samples))
    rows = np.broadcast_to(np.arange(len(r_idx))[:, None], r_idx.shape)
    train[rows[valid], r_idx[valid]] = 1.0
    return train


def _place_beats(templates: np.ndarray, train: np.ndarray, fs: int) -> np.ndarray:
    """Convolve each record's template with its impulse train (float32 FFT), aligned on the R peak."""
    from scipy import fft

    n_samples = train.shape[-1]
    shift = int(round(-_TEMPLATE_START_S * fs))
    size = fft.next_fast_len(n_samples + templates.shape[-1], real=True)
    spec = fft.rfft(templates.astype(np.float32), size, axis=-1)
    spec *= fft.rfft(train.astype(np.float32), size, axis=-1)[:, None]
    return fft.irfft(spec, size, axis=-1)[..., shift : shift + n_samples]


def _sinusoids(rng: np.random.Generator, n: int, t: np.ndarray, amp: tuple, freq: tuple) -> np.ndarray:
    """``(n, 12, T)`` sinusoids, one frequency per record and amplitude/phase per lead.

    Uses ``a sin(wt + phi) = a cos(phi) sin(wt) + a sin(phi) cos(wt)`` so that only ``(n, 1, T)``
    sines are evaluated.
    """
    wt = (2 * np.pi * rng.uniform(*freq, (n, 1, 1)) * t).astype(np.float32)
    a = rng.uniform(*amp, (n, 12, 1))
    phi = rng.uniform(0, 2 * np.pi, (n, 12, 1))
    cos_part, sin_part = (a * np.cos(phi)).astype(np.float32), (a * np.sin(phi)).astype(np.float32)
    return cos_part * np.sin(wt) + sin_part * np.cos(wt)


def _noise(rng: np.random.Generator, rhythm: np.ndarray, n_samples: int, fs: int) -> np.ndarray:
    """White noise, baseline wander and (AFIB only) fibrillatory waves, ``(n, 12, n_samples)``."""
    n = len(rhythm)
    t = np.arange(n_samples) / fs
    white = 0.02 * rng.standard_normal((n, 12, n_samples), dtype=np.float32)
    wander = _sinusoids(rng, n, t, (0.05, 0.15), (0.1, 0.3))
    is_af = (rhythm == RHYTHMS.index("AFIB"))[:, None, None]
    return white + wander + is_af * _sinusoids(rng, n, t, (0.04, 0.08), (5.0, 7.0))


def _label_lists(rhythm: np.ndarray, morph: np.ndarray) -> list[list[str]]:
    norm = ~morph.any(axis=1) & (rhythm != RHYTHMS.index("AFIB"))
    flags = np.concatenate([np.eye(len(RHYTHMS), dtype=bool)[rhythm], morph, norm[:, None]], axis=1)
    names = np.array(LABELS)
    return [names[row].tolist() for row in flags]


def generate(n: int, seed: int = 0) -> SyntheticECGs:
    """Generate ``n`` labelled 10 s, 500 Hz, 12-lead records (deterministic from ``seed``)."""
    if n < 1:
        raise MedclError(f"n: must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    rhythm, morph = _draw_labels(rng, n)
    n_beats = int(np.ceil(DURATION_S * _HR_RANGE["STACH"][1] / 60 / 0.65)) + 2
    rr = _rr_intervals(rng, rhythm, n_beats)
    r_peaks = rng.uniform(0.1, 0.6, (n, 1)) + np.cumsum(rr, axis=1) - rr[:, :1]
    valid = r_peaks < DURATION_S - 0.05
    offset, width = _wave_geometry(rr, morph)
    templates = _templates(_amplitudes(rng, rhythm, morph), offset, width, FS)
    train = _impulses(np.round(r_peaks * FS).astype(int).clip(0, N_SAMPLES - 1), valid, N_SAMPLES)
    signals = _place_beats(templates, train, FS) + _noise(rng, rhythm, N_SAMPLES, FS)
    return SyntheticECGs(
        signals=signals.astype(np.float32),
        labels=_label_lists(rhythm, morph),
        r_peaks_s=[np.round(r[v] * FS) / FS for r, v in zip(r_peaks, valid)],
        t_offset_s=offset[:, 5],
        age=rng.integers(18, 90, n),
        sex=rng.integers(0, 2, n),
    )


def truth_windows(code: str, r_peaks_s: np.ndarray, t_offset_s: float) -> np.ndarray | None:
    """``(n_beats, 2)`` start/end times (s) holding ``code``'s change, or None for the whole record."""
    if code in ("IMI", "AMI"):
        lo, hi = 0.04, t_offset_s
    elif code == "INVT":
        lo, hi = t_offset_s - 0.12, t_offset_s + 0.12
    elif code == "CLBBB":
        lo, hi = -0.10, 0.14
    else:
        return None
    peaks = np.asarray(r_peaks_s, dtype=float)
    return np.stack([peaks + lo, peaks + hi], axis=1)


def truth_mask(code: str, r_peaks_s: np.ndarray, t_offset_s: float, fs: float, n_samples: int) -> np.ndarray:
    """Boolean ``(12, n_samples)`` mask of the leads and samples where ``code``'s change lives.

    Rhythm and global labels (and AFIB outside leads II/V1) cover the whole record.
    """
    leads = TRUTH_LEADS.get(code, np.ones(12, bool))
    windows = truth_windows(code, np.asarray(r_peaks_s), t_offset_s)
    t = np.arange(n_samples) / fs
    if windows is None:
        in_time = np.ones(n_samples, bool)
    else:
        in_time = ((t[:, None] >= windows[:, 0]) & (t[:, None] < windows[:, 1])).any(axis=1)
    return leads[:, None] & in_time[None]


# --------------------------------------------------------------------------- PTB-XL-shaped folder

TRUTH_FILE = "synthetic_truth.json"
_CHUNK = 128
_LIKELIHOODS = np.array([50.0, 80.0, 100.0])


def _record_name(ecg_id: int, rate_dir: str, suffix: str) -> str:
    return f"{rate_dir}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_{suffix}"


def _write_wfdb(root: Path, name: str, signal: np.ndarray, fs: int) -> None:
    """Write one ``(12, n)`` mV record as WFDB format 16, gain 1000/mV, baseline 0 (as PTB-XL).

    Produces the same bytes as ``wfdb.wrsamp(..., fmt=["16"] * 12, adc_gain=[1000] * 12,
    baseline=[0] * 12)`` (checked by the tests) at a fraction of its cost: wrsamp spends ~50 ms
    per record validating header fields, which dominates writing thousands of records.
    """
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    digital = np.clip(np.round(signal * 1000.0), -32767, 32767).astype("<i2")
    digital.T.tofile(path.with_suffix(".dat"))
    checksum = digital.sum(axis=1, dtype=np.int64) % 65536
    stem = path.name
    lines = [f"{stem} {len(LEADS)} {fs} {digital.shape[1]}"] + [
        f"{stem}.dat 16 1000.0(0)/mV 16 0 {first} {check} 0 {lead}"
        for first, check, lead in zip(digital[:, 0], checksum, LEADS)
    ]
    path.with_suffix(".hea").write_text("\n".join(lines) + "\n")


def _scp_codes(labels: list[str], rng: np.random.Generator) -> str:
    """PTB-XL-style ``scp_codes`` literal: rhythm codes at likelihood 0.0 (as in PTB-XL), others drawn."""
    items = {c: (0.0 if c in RHYTHMS else float(rng.choice(_LIKELIHOODS))) for c in labels}
    return repr(items)


def _write_chunk(root: Path, batch: SyntheticECGs, first_id: int, rng: np.random.Generator) -> list[dict]:
    """Write the chunk's WFDB files at 500 and 100 Hz; return its database rows."""
    from scipy.signal import resample_poly

    low = resample_poly(batch.signals, 1, FS // 100, axis=-1)
    rows = []
    for i, labels in enumerate(batch.labels):
        ecg_id = first_id + i
        lr, hr = _record_name(ecg_id, "records100", "lr"), _record_name(ecg_id, "records500", "hr")
        _write_wfdb(root, hr, batch.signals[i], FS)
        _write_wfdb(root, lr, low[i], 100)
        rows.append({
            "ecg_id": ecg_id, "patient_id": float(ecg_id), "age": float(batch.age[i]), "sex": int(batch.sex[i]),
            "recording_date": "2000-01-01 00:00:00", "report": "synthetic " + " ".join(labels),
            "scp_codes": _scp_codes(labels, rng), "validated_by_human": True,
            "filename_lr": lr, "filename_hr": hr,
        })
    return rows


def _truth_entries(batch: SyntheticECGs, first_id: int) -> dict[str, dict]:
    return {
        str(first_id + i): {"labels": labels, "r_peaks_s": batch.r_peaks_s[i].tolist(),
                            "t_offset_s": float(batch.t_offset_s[i])}
        for i, labels in enumerate(batch.labels)
    }


def _write_statements(root: Path) -> None:
    """Write ``scp_statements.csv`` in the PTB-XL layout from the packaged statement table."""
    from medcl.data.ptbxl import packaged_statements
    from medcl.utils import atomic_write_path

    table = packaged_statements()
    out = table.rename(columns={"statement_category": "Statement Category"}).drop(columns="prototype_category")
    for flag in ("diagnostic", "form", "rhythm"):
        out[flag] = out[flag].where(out[flag] > 0).astype(float)
    with atomic_write_path(root / "scp_statements.csv") as tmp:
        out.set_index("code").rename_axis(None).to_csv(tmp)


def write_dataset(out_dir: str | Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` synthetic records as a PTB-XL-shaped folder; return its ``ptbxl_database.csv``.

    The folder holds ``records100/`` and ``records500/`` (WFDB, format 16), ``scp_statements.csv``,
    ``synthetic_truth.json`` (R peaks and labels per ``ecg_id``, for :func:`record_truth_mask`) and,
    written last and atomically, ``ptbxl_database.csv`` with ``strat_fold`` 1-10 assigned round-robin
    over a seeded permutation (every fold is used once ``n >= 10``).
    """
    import pandas as pd

    from medcl.utils import atomic_write_path, write_json

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    rows: list[dict] = []
    truth: dict[str, dict] = {}
    for c, start in enumerate(range(0, n, _CHUNK)):
        batch = generate(min(_CHUNK, n - start), seed=int(np.random.SeedSequence([seed, 0, c]).generate_state(1)[0]))
        rows += _write_chunk(root, batch, start + 1, rng)
        truth |= _truth_entries(batch, start + 1)
    db = pd.DataFrame(rows).set_index("ecg_id")
    db.insert(len(db.columns) - 2, "strat_fold", rng.permutation(n) % 10 + 1)
    _write_statements(root)
    write_json(root / TRUTH_FILE, truth)
    with atomic_write_path(root / "ptbxl_database.csv") as tmp:
        db.to_csv(tmp)
    return root / "ptbxl_database.csv"


def record_truth_mask(root: str | Path, ecg_id: int, code: str, fs: float = 100, n_samples: int = 1000) -> np.ndarray:
    """Ground-truth ``(12, n_samples)`` mask of ``code`` for one record of a written folder."""
    entry = load_truth(root).get(str(ecg_id))
    if entry is None:
        raise MedclError(f"{Path(root) / TRUTH_FILE}: no record with ecg_id {ecg_id}")
    return truth_mask(code, np.asarray(entry["r_peaks_s"]), entry["t_offset_s"], fs, n_samples)


def load_truth(root: str | Path) -> dict[str, dict]:
    """The ``synthetic_truth.json`` of a written folder: ``{ecg_id: {labels, r_peaks_s, t_offset_s}}``."""
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise MedclError(f"{path}: not found; is {root} a folder written by medcl.data.synthetic.ecg?")
    return json.loads(path.read_text())
