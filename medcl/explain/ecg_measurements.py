"""Basic ECG measurements for the report: heart rate, PR, QRS, QT, QTc (Bazett) and signal quality.

Method (global intervals from the 12-lead median beat, as recommended by the CSE working party,
Willems et al., 1985, and done by the Glasgow and 12SL programs):

1. QRS complexes: peaks of the summed absolute slope of the 12 leads (80 ms moving average),
   at least 0.25 s apart and above 35% of its 99th percentile (a Pan-Tompkins-style energy
   detector, Pan & Tompkins, 1985, over all leads); heart rate = 60 / median RR.
2. A median beat per lead over the beats with a full window (-0.35 s, +0.65 s around R), each
   lead referred to its isoelectric level (the median-beat value just before QRS onset).
3. QRS onset/offset: where the summed absolute slope of the 12 median beats (20 ms smoothing)
   falls below 8% of its QRS peak above the isoelectric slope level.
4. P onset: the summed absolute amplitude before QRS onset rises above 15% of its P peak (no P
   wave, e.g. atrial fibrillation, when the peak is under 0.1 mV summed over leads or flat).
5. T end: tangent method on the summed absolute amplitude (Lepeschkin & Surawicz, 1952): the
   tangent at the steepest descent after the T peak meets the baseline.
6. QTc = QT / sqrt(RR in s) (Bazett, 1920).
7. Signal quality: the median correlation of the single beats with the median beat (beat
   template matching): "good" >= 0.9, "acceptable" >= 0.7, else "poor"; leads with under
   0.01 mV standard deviation are listed as flat. (neurokit2 was tried and left out: its import
   costs about 2 s of CPU per report process and its DWT delineation gave QRS near 190 ms on
   normal real PTB-XL records.)

Tolerances (tested on synthetic ECGs with programmed intervals): heart rate 1 bpm, PR 20 ms,
QRS 20 ms, QT 30 ms. Values are indicative and must be checked on the tracing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PRE_S, POST_S = 0.35, 0.65
QRS_SLOPE_FRACTION = 0.08
P_FRACTION = 0.15
P_MIN_MV = 0.1
FLAT_MV = 0.01


@dataclass
class Measurements:
    """Global ECG measurements (None when not measurable).

    Attributes:
        heart_rate_bpm, pr_ms, qrs_ms, qt_ms, qtc_ms: the values.
        quality: ``"good"``, ``"acceptable"``, ``"poor"`` or ``"not assessable"`` (step 7).
        flat_leads: leads with under 0.01 mV standard deviation.
        n_beats: beats in the median beat.
        method: one line saying how the values were obtained.
    """

    heart_rate_bpm: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_ms: float | None = None
    quality: str = "not assessable"
    flat_leads: list[str] = field(default_factory=list)
    n_beats: int = 0
    method: str = ("12-lead median beat; QRS detection and onset/offset by summed slope, P onset by "
                   "amplitude, T end by tangent; QTc Bazett; quality by beat-template correlation")

    def as_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)


def _smooth(x: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(x, np.ones(max(1, n)) / max(1, n), mode="same")


def r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """QRS fiducial sample indices: peaks of the 12-lead summed absolute slope envelope."""
    from scipy.signal import find_peaks

    slope = np.abs(np.diff(signal, axis=-1)).sum(axis=0) * fs
    env = _smooth(slope, round(0.08 * fs))
    height = 0.35 * float(np.percentile(env, 99))
    peaks, _ = find_peaks(env, height=height, distance=max(1, round(0.25 * fs)))
    return peaks


def median_beat(signal: np.ndarray, peaks: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """``(12, W)`` median beat over the peaks with a full window, and the number of beats used."""
    pre, post = int(PRE_S * fs), int(POST_S * fs)
    ok = [p for p in peaks if p - pre >= 0 and p + post <= signal.shape[-1]]
    if not ok:
        return np.zeros((signal.shape[0], pre + post)), 0
    beats = np.stack([signal[:, p - pre : p + post] for p in ok])
    return np.median(beats, axis=0), len(ok)


def _below(x: np.ndarray, start: int, thr: float, step: int, hold: int) -> int | None:
    """First index from ``start`` (moving by ``step``) where ``x`` stays below ``thr`` for ``hold`` samples."""
    i = start
    while 0 <= i < len(x):
        j = i + step * hold
        window = x[min(i, j) : max(i, j) + 1]
        if window.size and np.all(window < thr):
            return i
        i += step
    return None


def qrs_bounds(beat: np.ndarray, fs: float) -> tuple[int, int] | None:
    """QRS onset and offset indices in the median beat (summed absolute slope method)."""
    slope = _smooth(np.abs(np.diff(beat, axis=-1)).sum(axis=0) * fs, round(0.02 * fs))
    r = int(PRE_S * fs)
    lo, hi = r - round(0.08 * fs), r + round(0.08 * fs)
    peak = lo + int(np.argmax(slope[lo:hi]))
    base = float(np.percentile(slope, 10))
    thr = base + QRS_SLOPE_FRACTION * (slope[peak] - base)
    hold = max(1, round(0.01 * fs))
    on = _below(slope, peak, thr, -1, hold)
    off = _below(slope, peak, thr, +1, hold)
    if on is None or off is None:
        return None
    return on, off + 1


def t_end(amp: np.ndarray, qrs_off: int, limit: int, fs: float) -> int | None:
    """T-wave end by the tangent method on the summed absolute amplitude ``amp``."""
    start = qrs_off + round(0.06 * fs)
    if limit - start < round(0.1 * fs):
        return None
    seg = _smooth(amp, round(0.02 * fs))
    peak = start + int(np.argmax(seg[start : max(start + 1, min(limit, start + round(0.45 * fs)))]))
    tail = seg[peak : min(limit, peak + round(0.25 * fs))]
    if tail.size < 3:
        return None
    d = np.gradient(tail)
    k = int(np.argmin(d))
    if d[k] >= 0:
        return None
    base = float(tail[k:].min())
    return int(round(peak + k + (base - tail[k]) / d[k]))


def p_onset(amp: np.ndarray, qrs_on: int, fs: float, after: int = 0) -> int | None:
    """P-wave onset from the summed absolute amplitude before QRS onset (None when no P wave).

    The search starts 0.30 s before QRS onset, or just after ``after`` (the previous beat's T end).
    """
    lo, hi = max(0, after, qrs_on - round(0.30 * fs)), qrs_on - round(0.03 * fs)
    if hi - lo < round(0.05 * fs):
        return None
    seg = _smooth(amp, round(0.02 * fs))
    peak = lo + int(np.argmax(seg[lo:hi]))
    base = float(seg[lo:peak + 1].min()) if peak > lo else 0.0
    height = seg[peak] - base
    if height < P_MIN_MV or peak == lo:
        return None
    on = _below(seg, peak, base + P_FRACTION * height, -1, max(1, round(0.01 * fs)))
    return on


def signal_quality(signal: np.ndarray, peaks: np.ndarray, beat: np.ndarray, fs: float) -> str:
    """``"good"``/``"acceptable"``/``"poor"`` from the beats' median correlation with the median beat."""
    pre, post = int(PRE_S * fs), int(POST_S * fs)
    ok = [p for p in peaks if p - pre >= 0 and p + post <= signal.shape[-1]]
    if len(ok) < 3:
        return "not assessable"
    template = beat.ravel() - beat.mean()
    corr = [np.corrcoef(signal[:, p - pre : p + post].ravel(), template)[0, 1] for p in ok]
    c = float(np.nanmedian(corr))
    return "good" if c >= 0.9 else "acceptable" if c >= 0.7 else "poor"


def measure(signal: np.ndarray, fs: float, leads: tuple[str, ...] | list[str] | None = None) -> Measurements:
    """Measurements of a ``(12, n)`` mV ECG at ``fs`` Hz (leads in standard order, lead II second)."""
    from medcl.io.ecg import LEADS

    names = list(leads or LEADS)
    x = np.asarray(signal, dtype=np.float64)
    out = Measurements(flat_leads=[names[i] for i in np.flatnonzero(x.std(axis=-1) < FLAT_MV)])
    if x.shape[-1] < 3 * fs or len(out.flat_leads) == len(names):
        return out
    peaks = r_peaks(x, fs)
    if len(peaks) < 3:
        return out
    rr = float(np.median(np.diff(peaks))) / fs
    out.heart_rate_bpm = round(60.0 / rr, 1)
    beat, out.n_beats = median_beat(x, peaks, fs)
    out.quality = signal_quality(x, peaks, beat, fs)
    bounds = qrs_bounds(beat, fs) if out.n_beats else None
    if bounds is None:
        return out
    on, off = bounds
    iso = np.median(beat[:, max(0, on - round(0.02 * fs)) : on + 1], axis=-1, keepdims=True)
    amp = np.abs(beat - iso).sum(axis=0)
    out.qrs_ms = round(1000 * (off - on) / fs)
    r = int(PRE_S * fs)
    limit = min(beat.shape[-1], r + int(min(0.9 * rr, rr - 0.18) * fs))  # before the next P wave
    end = t_end(amp, off, limit, fs)
    previous_t_end = 0
    if end is not None and end > off:
        out.qt_ms = round(1000 * (end - on) / fs)
        out.qtc_ms = round(out.qt_ms / np.sqrt(rr))
        previous_t_end = end - int(rr * fs) + round(0.02 * fs)
    p_on = p_onset(amp, on, fs, previous_t_end)
    if p_on is not None:
        out.pr_ms = round(1000 * (on - p_on) / fs)
    return out
