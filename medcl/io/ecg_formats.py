"""ECG file formats other than WFDB: format detection and the binary/array readers.

Every reader returns a :class:`RawECG` (channels in the file's order, physical units converted to
mV); :func:`medcl.io.ecg.read_ecg` maps the channels to the 12 standard leads (deriving the four
limb leads from I and II for 8-lead files) and preprocesses. The XML readers (HL7 aECG, GE MUSE,
Philips) live in :mod:`medcl.io.ecg_xml`.

Formats and how they are recognised (content first, extension as the fallback):

- WFDB (``.hea``/``.mat``/``.dat`` or a record name): :mod:`medcl.io.ecg`.
- DICOM 12-lead / general ECG waveform (``DICM`` preamble or ``.dcm``): pydicom.
- HDF5 (HDF5 signature or ``.h5``/``.hdf5``): the Shandong Provincial Hospital (SPH) layout, a
  dataset ``ecg`` of shape ``(12, n)`` in mV, leads I..V6, with labels/age/sex/fs from a
  ``metadata.csv`` in the same folder (Liu et al., Sci Data 2022); attributes ``fs``/``leads``
  on the dataset override the defaults.
- XML: HL7 aECG (``AnnotatedECG``), GE MUSE (``RestingECG``), Philips (``restingecgdata``).
- Arrays: ``.npy`` (channels x samples or samples x channels) and ``.csv`` (an optional header
  row of lead names), in mV; the sampling rate (``fs``) must be given, the lead names too unless
  the CSV header has them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medcl.errors import MedclError

FORMATS = ("wfdb", "dicom", "hdf5", "hl7-aecg", "ge-muse", "philips", "array")
"""The formats :func:`detect_format` recognises."""

FILE_SUFFIXES = (".h5", ".hdf5", ".dcm", ".xml", ".npy", ".csv")
"""Suffixes of the single-file (non-WFDB) formats."""

FOLDER_SUFFIXES = (".h5", ".hdf5", ".dcm", ".xml", ".npy")
"""Suffixes a folder is searched for besides ``*.hea`` (CSV files only when named explicitly, since
folders often hold metadata tables)."""

WFDB_SUFFIXES = (".hea", ".dat", ".mat", ".xyz")
"""File suffixes of a WFDB record (header, signal files); the one list every reader and cache uses."""
_XML_ROOTS = {"annotatedecg": "hl7-aecg", "restingecg": "ge-muse", "restingecgdata": "philips"}


@dataclass
class RawECG:
    """An ECG as stored in a file, before lead mapping and preprocessing.

    Attributes:
        signal: float64 ``(channels, n)`` in mV.
        leads: channel names as stored (normalised by :func:`canonical_lead`).
        fs: sampling rate in Hz.
        format: one of :data:`FORMATS`.
        age, sex, dx_snomed, comments: metadata found in the file (or its side table).
    """

    signal: np.ndarray
    leads: list[str]
    fs: float
    format: str
    age: float | None = None
    sex: str | None = None
    dx_snomed: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


def canonical_lead(name: str) -> str:
    """``"Lead I (Einthoven)"``, ``"MDC_ECG_LEAD_AVR"``, ``"avr"`` -> ``"I"``, ``"AVR"``, ``"avr"``.

    Matching against the standard names is case-insensitive (:func:`medcl.io.ecg.lead_indices`).
    """
    text = str(name).strip()
    text = text.split("(")[0].strip()
    for prefix in ("MDC_ECG_LEAD_", "Lead ", "LEAD "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    return text.strip()


def _sniff(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(1024)
    except OSError as exc:
        raise MedclError(f"{path}: cannot open ({exc.strerror or exc})") from exc


def detect_format(path: str | os.PathLike) -> str:
    """The format of an ECG file, from its content where it has a signature, else its extension.

    Raises:
        MedclError: a file that no reader recognises.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in WFDB_SUFFIXES or (not p.exists() and suffix not in FILE_SUFFIXES):
        return "wfdb"  # a record name: the WFDB reader reports a missing header
    if not p.is_file():
        raise MedclError(f"{p}: file not found")
    head = _sniff(p)
    if head[128:132] == b"DICM" or suffix == ".dcm":
        return "dicom"
    if head.startswith(b"\x89HDF\r\n\x1a\n") or suffix in (".h5", ".hdf5"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY") or suffix in (".npy", ".csv"):
        return "array"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") or suffix == ".xml":
        from medcl.io.ecg_xml import xml_root

        root = xml_root(p)
        if root not in _XML_ROOTS:
            raise MedclError(f"{p}: XML root <{root}> is not an HL7 aECG, GE MUSE or Philips ECG")
        return _XML_ROOTS[root]
    raise MedclError(
        f"{p}: not a recognised ECG file (WFDB, DICOM waveform, HDF5, HL7 aECG/GE MUSE/Philips XML, .npy/.csv)"
    )


def is_ecg_file(path: str | os.PathLike) -> bool:
    """A non-WFDB ECG file: HDF5/XML/array by suffix, DICOM only when it holds a WaveformSequence."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file() or suffix not in FILE_SUFFIXES and _sniff(p)[128:132] != b"DICM":
        return False
    if suffix in (".h5", ".hdf5", ".xml", ".npy", ".csv"):
        return True
    import pydicom

    try:
        return "WaveformSequence" in pydicom.dcmread(p, specific_tags=["WaveformSequence"])
    except Exception:  # not DICOM at all: the image reader gives the error
        return False


def read_raw(
    path: str | os.PathLike, fmt: str, fs: float | None = None, leads: Sequence[str] | None = None
) -> RawECG:
    """Read a non-WFDB file of format ``fmt`` (``fs``/``leads`` are needed for arrays only)."""
    from medcl.io import ecg_xml

    p = Path(path)
    readers = {
        "dicom": read_dicom, "hdf5": read_hdf5, "hl7-aecg": ecg_xml.read_hl7_aecg,
        "ge-muse": ecg_xml.read_ge_muse, "philips": ecg_xml.read_philips,
    }
    if fmt == "array":
        return read_array(p, fs, leads)
    return readers[fmt](p)


# ------------------------------------------------------------------------------------------- DICOM
def _dicom_units_to_mv(channel: Any, where: Path) -> float:
    from medcl.io.ecg import unit_factors

    seq = channel.get("ChannelSensitivityUnitsSequence")
    unit = seq[0].CodeValue if seq else "mV"
    return float(unit_factors([unit], where)[0])


def _dicom_group(ds: Any, where: Path) -> int:
    """Index of the rhythm multiplex group (the first with >= 8 channels that is not a median beat)."""
    groups = ds.get("WaveformSequence")
    if not groups:
        raise MedclError(f"{where}: DICOM file has no WaveformSequence (not an ECG waveform object)")
    for i, g in enumerate(groups):
        label = str(g.get("MultiplexGroupLabel", "")).upper()
        if int(g.get("NumberOfWaveformChannels", 0)) >= 8 and "MEDIAN" not in label:
            return i
    raise MedclError(f"{where}: DICOM waveform has no multiplex group with at least 8 channels")


def read_dicom(path: Path) -> RawECG:
    """DICOM 12-lead / general ECG waveform via pydicom (sensitivity, correction and baseline applied).

    Channel names come from ``ChannelSourceSequence`` (``"Lead I (Einthoven)"`` -> ``I``); units
    from ``ChannelSensitivityUnitsSequence`` (UCUM ``uV``/``mV``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from medcl.io.ecg import _parse_age, _parse_sex

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise MedclError(f"{path}: not a readable DICOM file ({exc})") from exc
    i = _dicom_group(ds, path)
    group = ds.WaveformSequence[i]
    try:
        data = np.asarray(ds.waveform_array(i), dtype=np.float64).T  # (channels, n), sensitivity units
    except Exception as exc:  # pydicom raises ValueError/AttributeError on truncated waveform data
        raise MedclError(f"{path}: cannot decode DICOM waveform data ({type(exc).__name__}: {exc})") from exc
    channels = group.ChannelDefinitionSequence
    names = [canonical_lead(c.ChannelSourceSequence[0].CodeMeaning) for c in channels]
    factors = np.array([_dicom_units_to_mv(c, path) for c in channels])
    age = str(ds.get("PatientAge", "")).rstrip("Y").lstrip("0") or None
    return RawECG(
        signal=data * factors[:, None], leads=names, fs=float(group.SamplingFrequency), format="dicom",
        age=_parse_age(age), sex=_parse_sex(str(ds.get("PatientSex", ""))),
    )


# -------------------------------------------------------------------------------------------- HDF5
SPH_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _sph_metadata(path: Path) -> dict[str, str]:
    """The ``metadata.csv`` row of an SPH file (``ECG_ID`` = file name), or ``{}``."""
    table = path.parent / "metadata.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("ECG_ID") in (path.name, path.stem):
                return row
    return {}


def read_hdf5(path: Path) -> RawECG:
    """HDF5 in the SPH layout (dataset ``ecg``, ``(12, n)`` mV, 500 Hz unless stated otherwise)."""
    import h5py

    from medcl.io.ecg import _parse_age, _parse_sex

    try:
        with h5py.File(path, "r") as fh:
            if "ecg" not in fh:
                raise MedclError(f"{path}: HDF5 file has no 'ecg' dataset (has {', '.join(fh.keys()) or 'none'})")
            ds = fh["ecg"]
            if not isinstance(ds, h5py.Dataset):
                raise MedclError(f"{path}: HDF5 'ecg' is a group, not a dataset of samples")
            data = real_samples(ds[()], path, "HDF5 dataset 'ecg'")
            attrs = dict(ds.attrs)
    except OSError as exc:
        raise MedclError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if data.ndim != 2:
        raise MedclError(f"{path}: 'ecg' dataset has shape {data.shape}; expected (leads, samples)")
    meta = _sph_metadata(path)
    leads = [str(x.decode() if isinstance(x, bytes) else x) for x in attrs.get("leads", SPH_LEADS)]
    if data.shape[0] != len(leads):
        raise MedclError(f"{path}: 'ecg' dataset has {data.shape[0]} rows but {len(leads)} lead names")
    from medcl.io.ecg import check_fs

    fs = check_fs(attrs.get("fs", meta.get("fs") or 500), f"{path}: attribute 'fs'")
    dx = [c.strip() for c in meta.get("SNOMEDCTCode", "").replace(";", ",").split(",") if c.strip()]
    comments = [f"{k}: {v}" for k, v in meta.items() if k != "ECG_ID"]
    return RawECG(
        signal=data, leads=leads, fs=fs, format="hdf5", age=_parse_age(meta.get("Age")),
        sex=_parse_sex(meta.get("Sex")), dx_snomed=dx, comments=comments,
    )


# ------------------------------------------------------------------------------------------ arrays
def real_samples(data: Any, path: Path, what: str) -> np.ndarray:
    """``data`` as float64 when it holds real numbers (integers or floats); booleans, complex numbers,
    strings and objects are errors naming ``what`` (a cast would drop the imaginary part or read
    ``True`` as 1 mV without a word)."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "iuf":
        raise MedclError(f"{path}: {what} holds {arr.dtype} values, not real numbers (samples in mV)")
    return arr.astype(np.float64)


def _csv_array(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """Columns of a CSV (comma, semicolon or tab separated; a UTF-8 byte-order mark is skipped)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    if not lines:
        raise MedclError(f"{path}: CSV file is empty")
    delimiter = max(",;\t", key=lines[0].count) if any(d in lines[0] for d in ",;\t") else ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    if not rows:
        raise MedclError(f"{path}: CSV has a header row but no samples")
    width = len(header or rows[0])
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        data = None
    if data is None or data.ndim != 2 or data.shape[1] != width:
        _raise_bad_csv_cell(path, rows, width, first_row=2 if header else 1)
    return data.T, header  # columns are leads


def _raise_bad_csv_cell(path: Path, rows: list[list[str]], width: int, first_row: int) -> None:
    """Name the first ragged row or non-numeric cell of a CSV that numpy could not convert (run only on
    that failure: the cell-by-cell scan is too slow for every read)."""
    for n, row in enumerate(rows, start=first_row):
        if len(row) != width:
            raise MedclError(f"{path}: CSV row {n} has {len(row)} columns, expected {width}")
        for col, cell in enumerate(row, start=1):
            try:
                float(cell)
            except ValueError:
                raise MedclError(f"{path}: CSV row {n}, column {col}: {cell.strip()[:20]!r} is not a number") from None
    raise MedclError(f"{path}: CSV cells are not all numbers")


def read_array(path: Path, fs: float | None, leads: Sequence[str] | None) -> RawECG:
    """A ``.npy`` or ``.csv`` array in mV with the rate ``fs`` and lead names given by the caller.

    A ``.npy`` array may be channels x samples or samples x channels (the axis whose length equals
    the number of leads is the channel axis); a CSV has one column per lead.
    """
    if not fs or fs <= 0:
        raise MedclError(f"{path}: arrays carry no sampling rate; give it with --fs")
    header = None
    if path.suffix.lower() == ".csv":
        data, header = _csv_array(path)
    else:
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise MedclError(f"{path}: not a readable .npy array ({exc})") from exc
        data = real_samples(data, path, "array")
    names = list(leads) if leads else header
    if not names:
        raise MedclError(f"{path}: array has no lead names; give them with --leads I,II,...")
    if data.ndim != 2:
        raise MedclError(f"{path}: array has shape {data.shape}; expected (leads, samples)")
    if data.shape[0] != len(names) and data.shape[1] == len(names):
        data = data.T
    if data.shape[0] != len(names):
        raise MedclError(f"{path}: array has shape {data.shape} but {len(names)} lead names were given")
    return RawECG(signal=data, leads=[canonical_lead(n) for n in names], fs=float(fs), format="array")
