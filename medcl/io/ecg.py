"""12-lead ECG input: any supported ECG file -> float32 mV, standard lead order, fixed rate and length.

Formats (one interface, :func:`read_ecg`; chosen by content/extension in
:func:`medcl.io.ecg_formats.detect_format`): WFDB (here), DICOM waveform, HDF5 (SPH layout),
NumPy/CSV arrays (:mod:`medcl.io.ecg_formats`), HL7 aECG, GE MUSE and Philips XML
(:mod:`medcl.io.ecg_xml`). A file with I, II and V1-V6 only (8 stored leads, as many carts and
MUSE store them) gets III, aVR, aVL and aVF derived (Einthoven/Goldberger, :func:`standard_leads`);
``ECGRecord.derived_leads`` names them.

The preprocessing follows ProtoECGNet (Sethi et al., 2025, arXiv:2504.08713) and the PTB-XL
benchmark (Strodthoff et al., 2021): 12 leads in the order I, II, III, aVR, aVL, aVF, V1-V6,
resampled to 100 Hz (500 Hz supported) with an anti-aliasing polyphase filter, a zero-phase
first-order Butterworth high-pass at 0.5 Hz against baseline wander, and 10 s windows.

Length policy (``fit_length``): a longer record is cropped to its first ``n_samples`` samples
(``crop="start"``, the PTB-XL convention) or to its centre (``crop="center"``); a shorter record is
zero-padded at the end when it covers at least ``min_fraction`` (default 0.9) of the target, and is
otherwise rejected with a :class:`~medcl.errors.MedclError`.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medcl.errors import MedclError
from medcl.io.ecg_formats import WFDB_SUFFIXES

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""The standard 12 leads in the order every medcl ECG array uses."""

_LEAD_INDEX = {name.lower(): i for i, name in enumerate(LEADS)}
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}

Crop = Literal["start", "center"]


@dataclass
class ECGRecord:
    """A decoded 12-lead ECG and its header metadata.

    Attributes:
        signal: float32 array ``(12, n)`` in mV, leads in :data:`LEADS` order.
        fs: sampling rate of ``signal`` in Hz.
        record_id: record name (file stem).
        path: the WFDB record path (without extension).
        age: age in years, or None when absent/unknown.
        sex: ``"M"``, ``"F"`` or None.
        comments: the header's free-text comment lines.
        dx_snomed: SNOMED-CT codes from a ``# Dx:`` comment (PhysioNet/CinC 2021 convention).
        scp_codes: the PTB-XL SCP statements equivalent to ``dx_snomed`` (see :func:`snomed_to_scp`).
        source_fs: sampling rate of the file.
        source_n_samples: number of samples in the file.
        format: the file format (:data:`medcl.io.ecg_formats.FORMATS`).
        derived_leads: standard leads computed from I and II because the file lacks them.
        flat_leads: standard leads whose stored samples are all equal (an electrode off); a record
            flat in every lead is refused.
    """

    signal: np.ndarray
    fs: float
    record_id: str
    path: Path
    age: float | None = None
    sex: str | None = None
    comments: list[str] = field(default_factory=list)
    dx_snomed: list[str] = field(default_factory=list)
    scp_codes: list[str] = field(default_factory=list)
    source_fs: float = 0.0
    source_n_samples: int = 0
    format: str = "wfdb"
    derived_leads: list[str] = field(default_factory=list)
    flat_leads: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Duration of ``signal`` in seconds."""
        return self.signal.shape[-1] / self.fs


def record_name(path: str | os.PathLike) -> str:
    """The WFDB record path of ``path`` as a string (``x.hea``, ``x.mat``, ``x.dat`` or ``x`` -> ``x``)."""
    text = os.fspath(path)
    stem, ext = os.path.splitext(text)
    return stem if ext.lower() in WFDB_SUFFIXES else text


def record_base(path: str | os.PathLike) -> Path:
    """The WFDB record path of ``path`` (see :func:`record_name`)."""
    return Path(record_name(path))


def _read_header(base: Path) -> Any:
    import wfdb

    if not base.with_suffix(".hea").is_file():
        raise MedclError(f"{base}.hea: WFDB header not found")
    try:
        return wfdb.rdheader(str(base))
    except Exception as exc:  # wfdb raises bare Exception/ValueError for malformed headers
        raise MedclError(f"{base}.hea: malformed WFDB header ({exc})") from exc


def _header_lines(base: Path) -> list[str]:
    """The record and signal lines of ``base.hea`` (comments and blank lines dropped)."""
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise MedclError(f"{header}: WFDB header not found")
    return [ln for ln in header.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def _header_fs(base: Path, lines: list[str]) -> float:
    """The sampling rate of the record line (``name n_sig fs[/counter[(base)]] ...``; WFDB's 250 Hz
    when left out), read from the text: wfdb's own header parser costs about 2.5 ms per record and
    ``rdrecord`` runs it again. A field it cannot read goes through wfdb for the precise error."""
    fields = lines[0].split() if lines else []
    if len(fields) < 3:
        return 250.0 if len(fields) == 2 else float(_read_header(base).fs)
    match = re.match(r"-?(\d+\.?\d*|\.\d+)", fields[2])  # digits and a point, as wfdb's record-line pattern
    return float(match.group()) if match else float(_read_header(base).fs)


def _check_gains(base: Path, lines: list[str]) -> None:
    """Refuse standard leads whose header gives an ADC gain of 0 or none: WFDB calls such signals
    uncalibrated (wfdb then assumes 200 units/mV silently), so their amplitudes in mV are unknown."""
    uncalibrated = []
    for line in lines[1:]:
        fields = line.split()
        lead = fields[8] if len(fields) > 8 else ""
        if lead.strip().lower() not in _LEAD_INDEX:
            continue
        gain = re.match(r"[-+0-9.eE]*", fields[2]).group() if len(fields) > 2 else ""
        try:
            calibrated = float(gain) != 0
        except ValueError:
            calibrated = False
        if not calibrated:
            uncalibrated.append(lead)
    if uncalibrated:
        raise MedclError(f"{base}.hea: ADC gain is 0 or missing (uncalibrated) for leads {', '.join(uncalibrated)}; "
                         "their amplitudes in mV are unknown")


def _check_signal_files(header: Any, base: Path) -> None:
    """Check that every signal file the header names exists and holds exactly ``sig_len`` frames.

    A file shorter than the header's samples, or holding at least one whole extra frame, means that
    header and data disagree. Formats without a fixed sample size (compressed FLAC) are not checked.
    """
    from wfdb.io._signal import BYTES_PER_SAMPLE

    if not header.n_sig or not header.file_name:
        raise MedclError(f"{base}.hea: header declares no signal lines")
    frame: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for fname, fmt, offset in zip(header.file_name, header.fmt, header.byte_offset or [None] * header.n_sig):
        frame[fname] = frame.get(fname, 0.0) + BYTES_PER_SAMPLE.get(str(fmt), math.nan)
        offsets[fname] = int(offset or 0)
    for fname, frame_bytes in frame.items():
        data = base.parent / fname
        if not data.is_file():
            raise MedclError(f"{base}.hea: names signal file {fname}, which does not exist")
        if math.isnan(frame_bytes) or header.sig_len is None:  # no length stated: the file's size gives it
            continue
        expected = math.ceil(frame_bytes * header.sig_len) + offsets[fname]
        size = data.stat().st_size
        if size < expected or size - expected >= frame_bytes:
            raise MedclError(
                f"{data}: holds {size} bytes but the header's {header.sig_len} samples "
                f"need {expected}; header and data disagree"
            )


def _read_record(base: Path) -> Any:
    """Read a WFDB record with wfdb (any format it supports, multi-file records included).

    The header is parsed once (by ``rdrecord``); when reading fails, the header and the signal
    files are examined to report the precise problem. File sizes are checked in every case.
    """
    import wfdb

    try:
        rec = wfdb.rdrecord(str(base))
    except Exception as exc:  # wfdb raises bare Exception/ValueError/FileNotFoundError
        header = _read_header(base)
        _check_signal_files(header, base)
        raise MedclError(f"{base}: cannot read WFDB signals ({exc})") from exc
    if not rec.sig_len or rec.p_signal is None:
        raise MedclError(f"{base}.hea: record has no signals or no samples")
    _check_signal_files(rec, base)
    return rec


def check_repeated_leads(names: Sequence[str], where: str | Path) -> dict[int, int]:
    """``{standard lead index: channel}``; a standard lead stored twice is an error naming it."""
    position: dict[int, int] = {}
    for i, name in enumerate(names):
        j = _LEAD_INDEX.get(str(name).strip().lower())
        if j is None:
            continue
        if j in position:
            raise MedclError(f"{where}: lead {LEADS[j]} is stored twice (channels {position[j] + 1} and {i + 1}); "
                             "which copy is meant is ambiguous")
        position[j] = i
    return position


def lead_indices(names: list[str], where: str | Path) -> np.ndarray:
    """Indices of the 12 standard leads in ``names`` (case-insensitive; extra leads ignored).

    Raises:
        MedclError: naming every standard lead that is missing.
    """
    position = check_repeated_leads(names, where)
    missing = [lead for j, lead in enumerate(LEADS) if j not in position]
    if missing:
        raise MedclError(f"{where}: missing leads {', '.join(missing)} (file has {', '.join(names)})")
    return np.array([position[j] for j in range(len(LEADS))])


_LIMB = ("III", "aVR", "aVL", "aVF")


def standard_leads(names: list[str], signal: np.ndarray, where: str | Path) -> tuple[np.ndarray, list[str]]:
    """The ``(12, n)`` standard leads from the file's channels, deriving missing limb leads.

    When all of III, aVR, aVL, aVF are absent but I and II present, they are computed from
    Einthoven's and Goldberger's relations: III = II - I, aVR = -(I + II)/2, aVL = I - II/2,
    aVF = II - I/2.

    Returns:
        ``(signal (12, n), derived lead names)``.

    Raises:
        MedclError: naming every standard lead that is missing and cannot be derived.
    """
    present = {str(n).strip().lower() for n in names}
    if not any(lead.lower() in present for lead in _LIMB) and {"i", "ii"} <= present:
        i1, i2 = (list(map(str.lower, map(str.strip, names))).index(k) for k in ("i", "ii"))
        one, two = signal[i1], signal[i2]
        extra = np.stack([two - one, -(one + two) / 2, one - two / 2, two - one / 2])
        names, signal = [*names, *_LIMB], np.concatenate([signal, extra])
        derived = list(_LIMB)
    else:
        derived = []
    return signal[lead_indices(list(names), where)], derived


def unit_factors(units: list[str | None], where: str | Path) -> np.ndarray:
    """Per-channel factors converting the header's physical units to mV (missing unit = mV)."""
    factors = []
    for unit in units:
        key = (unit or "mV").strip().lower()
        if key not in _UNIT_TO_MV:
            raise MedclError(f"{where}: unsupported signal unit {unit!r}; expected mV, uV or V")
        factors.append(_UNIT_TO_MV[key])
    return np.asarray(factors)


def resample(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample along the last axis with scipy's anti-aliasing polyphase filter (``resample_poly``)."""
    from scipy.signal import resample_poly

    if fs_in == fs_out:
        return signal
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1)


def highpass(signal: np.ndarray, fs: float, cutoff: float = 0.5) -> np.ndarray:
    """Zero-phase first-order Butterworth high-pass (``sosfiltfilt``) along the last axis."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(1, cutoff, btype="highpass", fs=fs, output="sos")
    return sosfiltfilt(sos, signal, axis=-1)


MIN_FILTER_SAMPLES = 16
"""Fewest samples the zero-phase high-pass accepts (``sosfiltfilt`` pads by 6 on each side)."""


def check_length(n: int, n_samples: int, where: str | Path, min_fraction: float = 0.9) -> None:
    """Refuse a record of ``n`` samples that is shorter than ``min_fraction * n_samples``."""
    if n < min_fraction * n_samples:
        raise MedclError(
            f"{where}: record has {n} samples after resampling; needs at least "
            f"{math.ceil(min_fraction * n_samples)} of {n_samples} (shorter records are not padded)"
        )


def fit_length(
    signal: np.ndarray, n_samples: int, where: str | Path, crop: Crop = "start", min_fraction: float = 0.9
) -> np.ndarray:
    """Crop or zero-pad ``signal`` to ``n_samples`` along the last axis (policy in the module doc).

    Raises:
        MedclError: when the record is shorter than ``min_fraction * n_samples``.
    """
    n = signal.shape[-1]
    if n >= n_samples:
        start = 0 if crop == "start" else (n - n_samples) // 2
        return signal[..., start : start + n_samples]
    check_length(n, n_samples, where, min_fraction)
    pad = [(0, 0)] * (signal.ndim - 1) + [(0, n_samples - n)]
    return np.pad(signal, pad)


def parse_comments(comments: list[str]) -> dict[str, Any]:
    """Parse ``Key: value`` header comments into ``age``, ``sex`` and ``dx_snomed``.

    Understands the PhysioNet/CinC 2021 lines (``Age: 59``, ``Sex: Female``, ``Dx: 1649..,4267..``)
    and the PTB Diagnostic ones (``age: 81``, ``sex: female``), case-insensitively.
    """
    fields: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    age = _parse_age(fields.get("age"))
    sex = _parse_sex(fields.get("sex"))
    dx = [c for c in re.split(r"[,\s]+", fields.get("dx", "")) if c]
    return {"age": age, "sex": sex, "dx_snomed": dx}


def _parse_age(value: str | None) -> float | None:
    try:
        age = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return None if math.isnan(age) or age < 0 else age


def _parse_sex(value: str | None) -> str | None:
    head = (value or "").strip().lower()[:1]
    return {"m": "M", "f": "F"}.get(head)


@functools.lru_cache(maxsize=1)
def snomed_scp_table() -> dict[str, str]:
    """SNOMED-CT code -> PTB-XL SCP code, for codes with an unambiguous SCP equivalent.

    Source: ``medcl/resources/snomed_to_scp.csv`` (built from the PhysioNet/CinC 2021 mapping
    tables, BSD-2, checked by hand against the PTB-XL statement list; see resources/README.md).
    """
    text = resources.files("medcl.resources").joinpath("snomed_to_scp.csv").read_text()
    return {row["snomed_code"]: row["scp_code"] for row in csv.DictReader(text.splitlines())}


def snomed_to_scp(codes: list[str]) -> list[str]:
    """Map SNOMED-CT codes to PTB-XL SCP codes, dropping codes without an equivalent (order kept)."""
    table = snomed_scp_table()
    return list(dict.fromkeys(table[c] for c in codes if c in table))


def preprocess(
    signal: np.ndarray,
    fs_in: float,
    fs: float,
    n_samples: int | None,
    highpass_hz: float | None,
    where: str | Path,
    crop: Crop = "start",
    min_fraction: float = 0.9,
) -> np.ndarray:
    """Resample, high-pass and crop/pad a ``(12, n)`` mV array; returns float32."""
    if not np.isfinite(signal).all():
        bad = [LEADS[i] for i in np.flatnonzero(~np.isfinite(signal).all(axis=-1))]
        raise MedclError(f"{where}: signal has NaN/inf samples in leads {', '.join(bad)}")
    out = resample(signal, fs_in, fs)
    if n_samples is not None:
        check_length(out.shape[-1], n_samples, where, min_fraction)
    if highpass_hz:
        if out.shape[-1] < MIN_FILTER_SAMPLES:
            raise MedclError(f"{where}: record has {out.shape[-1]} samples after resampling; too short to filter")
        out = highpass(out, fs, highpass_hz)
    if n_samples is not None:
        out = fit_length(out, n_samples, where, crop, min_fraction)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_ecg(
    path: str | Path,
    fs: float | None = 100,
    n_samples: int | None = None,
    highpass: float | None = 0.5,
    crop: Crop = "start",
    min_fraction: float = 0.9,
    source_fs: float | None = None,
    source_leads: Sequence[str] | None = None,
    upsample: bool = False,
) -> ECGRecord:
    """Read an ECG file of any supported format as a preprocessed 12-lead ECG.

    Args:
        path: a WFDB record path with or without extension (``.hea``/``.mat``/``.dat``), or a
            DICOM/HDF5/XML/``.npy``/``.csv`` file (see :mod:`medcl.io.ecg_formats`).
        fs: target sampling rate in Hz (100 default; 500 supported; any rate works; None keeps
            the file's rate).
        n_samples: target length; None keeps the resampled length.
        highpass: high-pass cut-off in Hz (0.5 per ProtoECGNet); None or 0 disables it.
        crop: which window a longer record keeps (``"start"`` or ``"center"``).
        min_fraction: shortest record, as a fraction of ``n_samples``, that is zero-padded.
        source_fs, source_leads: sampling rate and lead names of an array file (``--fs``/``--leads``).
        upsample: allow a file sampled below ``fs`` (display only; a model's input never is).

    Returns:
        The :class:`ECGRecord` (signal float32 ``(12, n)`` mV in :data:`LEADS` order).

    Raises:
        MedclError: missing/corrupt/unrecognised files, missing or repeated leads, unknown units,
            NaNs, too-short records, a sampling rate that is not positive or is below ``fs``.
    """
    view = {"fs": fs, "n_samples": n_samples, "highpass": highpass, "crop": crop, "min_fraction": min_fraction,
            "upsample": upsample}
    return read_ecg_views(path, [view], source_fs, source_leads)[0]


def read_ecg_views(
    path: str | Path, views: Sequence[dict[str, Any]], source_fs: float | None = None,
    source_leads: Sequence[str] | None = None,
) -> list[ECGRecord]:
    """Read the file once and preprocess it once per view (the keyword arguments of :func:`read_ecg`:
    ``fs``, ``n_samples``, ``highpass``, ``crop``, ``min_fraction``), e.g. as shown and as a model reads it."""
    raw, base = read_raw_ecg(path, source_fs, source_leads)
    mv, derived = standard_leads(raw.leads, raw.signal, base)
    flat = flat_leads(mv)
    if len(flat) == len(LEADS):
        raise MedclError(f"{base}: signal is flat (constant) in every lead; the file holds no ECG")
    check_amplitude(mv, base)
    return [_view(raw, base, mv, derived, flat, **view) for view in views]


MAX_AMPLITUDE_MV = 50.0
"""Largest plausible ECG amplitude (99th percentile of ``|x - median|`` in the largest lead): QRS
complexes reach a few mV (about 7 in z-scored PTB-XL signals); 50 mV and more means samples in µV
or ADC counts read as mV."""
MIN_AMPLITUDE_MV = 0.02
"""Smallest plausible amplitude in the largest lead: below 20 µV an ECG is noise, or volts read as mV."""


def check_amplitude(signal: np.ndarray, where: str | Path) -> None:
    """Refuse a ``(12, n)`` mV array whose amplitudes no ECG has (the unit is wrong by 1000 or so).

    Arrays and CSVs carry no unit and a WFDB header may name the wrong one; without this check a
    record in µV would be read as a thousand-fold ECG and classified without a word.
    """
    if not np.isfinite(signal).all():
        return  # NaN/inf samples are refused by preprocess, with the leads named
    spread = np.percentile(np.abs(signal - np.median(signal, axis=-1, keepdims=True)), 99, axis=-1)
    largest = float(spread.max())
    if largest > MAX_AMPLITUDE_MV:
        raise MedclError(f"{where}: amplitudes of about {largest:.4g} mV are not an ECG's (a few mV); the unit is "
                         "probably wrong (samples in µV or ADC counts read as mV)")
    if largest < MIN_AMPLITUDE_MV:
        raise MedclError(f"{where}: amplitudes of about {largest * 1000:.3g} µV are too small for an ECG (a few "
                         "mV); the unit is probably wrong (samples in V read as mV, or mV labelled µV)")


def flat_leads(signal: np.ndarray) -> list[str]:
    """Names of the leads of a ``(12, n)`` array whose samples are all equal (NaN-free leads only)."""
    finite = np.isfinite(signal).all(axis=-1)
    return [LEADS[i] for i in np.flatnonzero(finite & (np.ptp(np.where(finite[:, None], signal, 0), axis=-1) == 0))]


def _view(raw: Any, base: Path, mv: np.ndarray, derived: list[str], flat: list[str], fs: float | None = 100,
          n_samples: int | None = None, highpass: float | None = 0.5, crop: Crop = "start",
          min_fraction: float = 0.9, upsample: bool = False) -> ECGRecord:
    fs = raw.fs if fs is None else float(fs)
    if not upsample and raw.fs < fs * (1 - 1e-6):
        raise MedclError(f"{base}: sampled at {raw.fs:g} Hz, below the {fs:g} Hz needed (upsampling cannot "
                         "restore what the recording lacks)")
    signal = preprocess(mv, raw.fs, fs, n_samples, highpass, base, crop, min_fraction)
    return ECGRecord(
        signal=signal,
        fs=fs,
        record_id=base.stem if raw.format != "wfdb" else base.name,
        path=base,
        age=raw.age,
        sex=raw.sex,
        comments=raw.comments,
        dx_snomed=raw.dx_snomed,
        scp_codes=snomed_to_scp(raw.dx_snomed),
        source_fs=raw.fs,
        source_n_samples=int(raw.signal.shape[-1]),
        format=raw.format,
        derived_leads=list(derived),
        flat_leads=list(flat),
    )


def check_fs(fs: Any, where: str | Path) -> float:
    """A sampling rate must be a finite number above 0 Hz."""
    try:
        value = float(fs)
    except (TypeError, ValueError):
        raise MedclError(f"{where}: sampling rate {fs!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise MedclError(f"{where}: sampling rate {value:g} Hz is not positive")
    if value > MAX_FS:
        raise MedclError(f"{where}: sampling rate {value:g} Hz is not an ECG's (at most {MAX_FS:g} Hz)")
    return value


MAX_FS = 100_000.0
"""Highest sampling rate accepted (ECG carts record at 250 Hz to 10 kHz; resampling to 100 Hz keeps a ratio
of at most 1/1000)."""


def read_raw_ecg(
    path: str | Path, source_fs: float | None = None, source_leads: Sequence[str] | None = None
) -> tuple[Any, Path]:
    """The file's channels in mV as a :class:`medcl.io.ecg_formats.RawECG`, and the record path.

    ``source_fs``/``source_leads`` describe arrays (``.npy``/``.csv``), which carry neither.
    """
    from medcl.io.ecg_formats import RawECG, detect_format, read_raw

    fmt = detect_format(path)
    if fmt != "wfdb":
        raw = read_raw(path, fmt, source_fs, source_leads)
        check_fs(raw.fs, path)
        return raw, Path(path)
    base = record_base(path)
    lines = _header_lines(base)
    check_fs(_header_fs(base, lines), f"{base}.hea")
    _check_gains(base, lines)
    rec = _read_record(base)
    used = [str(n).strip().lower() in _LEAD_INDEX for n in rec.sig_name]  # other channels' units are not needed
    factors = np.array([unit_factors([u], base)[0] if k else 1.0 for u, k in zip(rec.units, used)])
    meta = parse_comments(list(rec.comments))
    raw = RawECG(
        signal=rec.p_signal.T * factors[:, None], leads=list(rec.sig_name), fs=float(rec.fs), format="wfdb",
        age=meta["age"], sex=meta["sex"], dx_snomed=meta["dx_snomed"], comments=list(rec.comments),
    )
    return raw, base


def inspect_ecg(path: str | Path, source_fs: float | None = None, source_leads: Sequence[str] | None = None) -> dict:
    """Describe an ECG file (for ``medcl data inspect``): a WFDB header alone, other formats decoded.

    Returns:
        ``{"record_id", "path", "format", "fs", "n_samples", "duration_s", "leads" (names as in the
        file), "derived_leads", "units", "files", "age", "sex", "dx_snomed", "scp_codes", "comments"}``.
    """
    from medcl.io.ecg_formats import detect_format

    if detect_format(path) != "wfdb":
        raw, p = read_raw_ecg(path, source_fs, source_leads)
        mv, derived = standard_leads(raw.leads, raw.signal, p)
        check_amplitude(mv, p)
        n = int(raw.signal.shape[-1])
        return {
            "record_id": p.stem, "path": str(p), "format": raw.format, "fs": raw.fs, "n_samples": n,
            "duration_s": n / raw.fs, "leads": raw.leads, "derived_leads": derived, "units": ["mV"] * len(raw.leads),
            "files": [p.name], "age": raw.age, "sex": raw.sex, "dx_snomed": raw.dx_snomed,
            "scp_codes": snomed_to_scp(raw.dx_snomed), "comments": raw.comments,
        }
    base = record_base(path)
    header = _read_header(base)
    fs = check_fs(header.fs, f"{base}.hea")
    _check_gains(base, _header_lines(base))
    _check_signal_files(header, base)
    check_repeated_leads(list(header.sig_name or []), f"{base}.hea")
    meta = parse_comments(list(header.comments or []))
    names = list(header.sig_name or [])
    present = {n.strip().lower() for n in names}
    derived = list(_LIMB) if {"i", "ii"} <= present and not present & {x.lower() for x in _LIMB} else []
    if header.sig_len is None:  # optional in WFDB: the signal files' size gives it (as wfdb reads them)
        header.sig_len = int(_read_record(base).sig_len)
    return {
        "record_id": base.name,
        "path": str(base),
        "format": "wfdb",
        "fs": fs,
        "n_samples": int(header.sig_len or 0),
        "duration_s": (header.sig_len or 0) / fs,
        "leads": names,
        "derived_leads": derived,
        "units": list(header.units or []),
        "files": list(dict.fromkeys(header.file_name or [])),
        **meta,
        "scp_codes": snomed_to_scp(meta["dx_snomed"]),
        "comments": list(header.comments or []),
    }


def find_records(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """ECG records named by ``inputs``: files/record names as given, folders expanded.

    A folder contributes every WFDB record (``*.hea``, as a record path without extension) and
    every DICOM/HDF5/XML/``.npy`` file below it (:data:`medcl.io.ecg_formats.FOLDER_SUFFIXES`),
    sorted; CSV files only when named. Duplicates are dropped, order is kept.

    Raises:
        MedclError: a folder that holds no ECG file.
    """
    from medcl.io.ecg_formats import FOLDER_SUFFIXES

    records: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                str(h.with_suffix("")) if h.suffix == ".hea" else str(h)
                for h in p.rglob("*")
                if h.is_file() and (h.suffix == ".hea" or h.suffix.lower() in FOLDER_SUFFIXES)
            )
            if not found:
                raise MedclError(f"{item}: folder holds no ECG files (*.hea, {', '.join(FOLDER_SUFFIXES)})")
            records += found
        else:
            records.append(str(item))
    unique: dict[str, str] = {}
    for rec in records:  # one record named twice (``x.hea`` and ``x``, or through a symlink) is read once
        unique.setdefault(os.path.realpath(record_name(rec) if _names_wfdb_record(rec) else rec), rec)
    return list(unique.values())


def _names_wfdb_record(path: str | os.PathLike) -> bool:
    """A path that names a WFDB record (a WFDB suffix, or no file of another ECG format)."""
    from medcl.io.ecg_formats import FILE_SUFFIXES

    p = Path(path)
    return p.suffix.lower() in WFDB_SUFFIXES or (not p.is_file() and p.suffix.lower() not in FILE_SUFFIXES)
