"""ECG XML formats: HL7 aECG, GE MUSE and Philips (parsed with defusedxml; hostile XML is refused).

- HL7 aECG (FDA annotated ECG, HL7 v3 ``urn:hl7-org:v3``): the first ``series`` (rhythm), its
  ``sequenceSet``: a ``TIME_ABSOLUTE``/``TIME_RELATIVE`` sequence whose ``increment`` gives the
  sampling interval, and one ``SLIST_PQ`` sequence per lead (``MDC_ECG_LEAD_*``) with
  ``value = origin + scale * digit`` in the stated unit.
- GE MUSE XML (``RestingECG``): the ``Rhythm`` waveform; ``SampleBase`` x 10^``SampleExponent`` Hz,
  per lead base64 little-endian int16 ``WaveFormData`` x ``LeadAmplitudeUnitsPerBit`` (microvolts).
  MUSE stores I, II, V1-V6; the limb leads are derived by :func:`medcl.io.ecg.standard_leads`.
- Philips PageWriter/Sierra XML (``restingecgdata``): XLI-compressed waveforms are decoded by
  ``sierraecg``; uncompressed ones (base64 int16, lead after lead, ``durationperchannel`` ms each)
  by medcl, since sierraecg 0.4 fails on them (it modifies a read-only buffer). Samples are scaled
  by ``signalresolution`` (microvolts per unit, 5 when absent). Only I, II and V1-V6 are taken:
  Philips stores III/aVR/aVL/aVF as residuals, and medcl derives them from I and II instead
  (Einthoven/Goldberger, exact for any encoding).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np

from medcl.errors import MedclError
from medcl.io.ecg_formats import RawECG, canonical_lead

_HL7 = "{urn:hl7-org:v3}"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_xml(path: Path) -> Any:
    """Parse ``path`` with defusedxml; entity declarations and external references are refused."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, parse

    try:
        return parse(path, forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as exc:
        raise MedclError(f"{path}: refused hostile XML ({type(exc).__name__}: entities/external references)") from exc
    except ParseError as exc:
        raise MedclError(f"{path}: malformed XML ({exc})") from exc
    except OSError as exc:
        raise MedclError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def xml_root(path: Path) -> str:
    """The lower-case local name of the root element of ``path`` (namespace dropped)."""
    return parse_xml(path).tag.rsplit("}", 1)[-1].lower()


def _float(text: str | None, where: Path, what: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MedclError(f"{where}: {what} is missing or not a number ({text!r})") from None


# ------------------------------------------------------------------------------------------ HL7 aECG
def read_hl7_aecg(path: Path) -> RawECG:
    """HL7 aECG: the rhythm series of the first ``series`` element."""
    from medcl.io.ecg import unit_factors

    root = parse_xml(path)
    series = root.find(f".//{_HL7}series")
    if series is None:
        raise MedclError(f"{path}: HL7 aECG has no <series> element")
    fs, names, rows = None, [], []
    for seq in series.findall(f"./{_HL7}component/{_HL7}sequenceSet/{_HL7}component/{_HL7}sequence"):
        code = (seq.find(f"{_HL7}code").get("code", "") if seq.find(f"{_HL7}code") is not None else "")
        value = seq.find(f"{_HL7}value")
        if value is None:
            continue
        if code.startswith("TIME_"):
            inc = value.find(f"{_HL7}increment")
            if inc is None:
                raise MedclError(f"{path}: HL7 aECG time sequence has no <increment>")
            step = _float(inc.get("value"), path, "time increment") * _TIME_SCALE.get(inc.get("unit", "s"), np.nan)
            if not step > 0:
                raise MedclError(f"{path}: HL7 aECG time increment {inc.get('value')} {inc.get('unit')} is invalid")
            fs = 1.0 / step
            continue
        if "SLIST" not in value.get(_XSI_TYPE, "SLIST_PQ"):
            continue
        origin, scale = value.find(f"{_HL7}origin"), value.find(f"{_HL7}scale")
        digits = value.find(f"{_HL7}digits")
        if scale is None or digits is None or not (digits.text or "").strip():
            raise MedclError(f"{path}: HL7 aECG lead {code} lacks <scale> or <digits>")
        try:
            d = np.array(digits.text.split(), dtype=np.float64)
        except ValueError:
            raise MedclError(f"{path}: HL7 aECG lead {code} has non-numeric digits") from None
        o = _float(origin.get("value"), path, f"{code} origin") if origin is not None else 0.0
        factor = unit_factors([scale.get("unit", "uV")], path)[0]
        rows.append((o + _float(scale.get("value"), path, f"{code} scale") * d) * factor)
        names.append(canonical_lead(code))
    if fs is None:
        raise MedclError(f"{path}: HL7 aECG has no TIME_ABSOLUTE/TIME_RELATIVE sequence (sampling rate unknown)")
    if not rows:
        raise MedclError(f"{path}: HL7 aECG has no lead sequences")
    n = {len(r) for r in rows}
    if len(n) != 1:
        raise MedclError(f"{path}: HL7 aECG leads have different lengths {sorted(n)}")
    sex_el = root.find(f".//{_HL7}administrativeGenderCode")
    sex = {"M": "M", "F": "F"}.get(sex_el.get("code", "") if sex_el is not None else "")
    return RawECG(signal=np.stack(rows), leads=names, fs=fs, format="hl7-aecg", sex=sex)


# ----------------------------------------------------------------------------------------- GE MUSE
_MUSE_UNITS = {"MICROVOLTS": 1e-3, "MILLIVOLTS": 1.0}


def read_ge_muse(path: Path) -> RawECG:
    """GE MUSE XML: the ``Rhythm`` waveform (base64 int16 per lead)."""
    from medcl.io.ecg import _parse_age, _parse_sex

    root = parse_xml(path)
    waves = [w for w in root.findall("Waveform") if (w.findtext("WaveformType") or "").strip() == "Rhythm"]
    if not waves:
        raise MedclError(f"{path}: GE MUSE XML has no Rhythm <Waveform>")
    wave = waves[0]
    fs = _float(wave.findtext("SampleBase"), path, "SampleBase") * 10 ** int(wave.findtext("SampleExponent") or 0)
    names, rows = [], []
    for lead in wave.findall("LeadData"):
        lead_id = (lead.findtext("LeadID") or "").strip()
        try:
            raw = np.frombuffer(base64.b64decode(lead.findtext("WaveFormData") or "", validate=False), dtype="<i2")
        except (binascii.Error, ValueError) as exc:
            raise MedclError(f"{path}: GE MUSE lead {lead_id}: WaveFormData is not base64 int16 ({exc})") from exc
        unit = (lead.findtext("LeadAmplitudeUnits") or "MICROVOLTS").strip().upper()
        if unit not in _MUSE_UNITS:
            raise MedclError(f"{path}: GE MUSE lead {lead_id}: unsupported LeadAmplitudeUnits {unit}")
        per_bit = _float(lead.findtext("LeadAmplitudeUnitsPerBit"), path, f"lead {lead_id} LeadAmplitudeUnitsPerBit")
        expected = lead.findtext("LeadSampleCountTotal")
        if expected is not None and int(expected) != raw.size:
            raise MedclError(f"{path}: GE MUSE lead {lead_id} holds {raw.size} samples; header says {expected}")
        rows.append(raw.astype(np.float64) * per_bit * _MUSE_UNITS[unit])
        names.append(canonical_lead(lead_id))
    if not rows or len({len(r) for r in rows}) != 1:
        raise MedclError(f"{path}: GE MUSE Rhythm waveform has no leads or leads of different lengths")
    demo = root.find("PatientDemographics")
    age = _parse_age(demo.findtext("PatientAge")) if demo is not None else None
    sex = _parse_sex(demo.findtext("Gender")) if demo is not None else None
    statements = [s.findtext("StmtText") or "" for s in root.iter("DiagnosisStatement")]
    comments = [f"Diagnosis: {s.strip()}" for s in statements if s.strip()]
    return RawECG(signal=np.stack(rows), leads=names, fs=fs, format="ge-muse", age=age, sex=sex, comments=comments)


# ----------------------------------------------------------------------------------------- Philips
_PHILIPS_KEEP = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def _philips_uncompressed(root: Any, path: Path) -> tuple[dict[str, np.ndarray], float]:
    """Lead name -> int16 samples and the rate of an uncompressed Philips ``parsedwaveforms`` block."""
    wave = root.find(".//parsedwaveforms")
    fs = _float(root.findtext(".//signalcharacteristics/samplingrate"), path, "samplingrate")
    if wave is None:
        raise MedclError(f"{path}: Philips XML has no <parsedwaveforms>")
    if wave.get("dataencoding", "Base64") != "Base64":
        raise MedclError(f"{path}: Philips waveform encoding {wave.get('dataencoding')} is not supported")
    labels = wave.get("leadlabels", "").split()
    if not labels:
        raise MedclError(f"{path}: Philips XML has no leadlabels attribute")
    n = int(_float(wave.get("durationperchannel"), path, "durationperchannel") * fs / 1000)
    try:
        data = np.frombuffer(base64.b64decode("".join((wave.text or "").split())), dtype="<i2")
    except (binascii.Error, ValueError) as exc:
        raise MedclError(f"{path}: Philips waveform data is not base64 int16 ({exc})") from exc
    if data.size < n * len(labels):
        raise MedclError(f"{path}: Philips waveform holds {data.size} samples; {len(labels)} leads x {n} expected")
    return {canonical_lead(k).lower(): data[i * n : (i + 1) * n] for i, k in enumerate(labels)}, fs


def _philips_xli(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """Lead name -> samples of an XLI-compressed Philips file (``sierraecg``)."""
    try:
        import sierraecg
    except ModuleNotFoundError as exc:
        raise MedclError(f"{path}: compressed Philips XML needs the 'sierraecg' package "
                         "(pip install 'medcl[ecg]')") from exc
    try:
        ecg = sierraecg.read_file(str(path))
    except Exception as exc:  # sierraecg raises its own RuntimeErrors, ValueError and IndexError
        raise MedclError(f"{path}: cannot decode Philips XML ({type(exc).__name__}: {exc})") from exc
    leads = {canonical_lead(lead.label).lower(): np.asarray(lead.samples) for lead in ecg.leads}
    return leads, float(ecg.leads[0].sampling_freq) if ecg.leads else 0.0


def read_philips(path: Path) -> RawECG:
    """Philips XML (I, II, V1-V6; limb leads derived downstream)."""
    root = parse_xml(path)
    version = (root.findtext(".//documentinfo/documentversion") or "").strip()
    if not version.startswith(("1.03", "1.04")):
        raise MedclError(f"{path}: Philips XML version {version or '(none)'} is not supported (1.03/1.04)")
    res_text = root.findtext(".//signalresolution") or root.findtext(".//signalcharacteristics/resolution")
    resolution_uv = _float(res_text, path, "signalresolution") if res_text else 5.0
    wave = root.find(".//parsedwaveforms")
    method = (wave.get("compressmethod") or wave.get("compression") or "Uncompressed") if wave is not None else ""
    by_name, fs = _philips_uncompressed(root, path) if method == "Uncompressed" else _philips_xli(path)
    missing = [n for n in _PHILIPS_KEEP if n.lower() not in by_name]
    if missing:
        raise MedclError(f"{path}: Philips XML lacks leads {', '.join(missing)}")
    rows = [by_name[n.lower()] for n in _PHILIPS_KEEP]
    if len({len(r) for r in rows}) != 1:
        raise MedclError(f"{path}: Philips XML leads have different lengths")
    signal = np.stack(rows).astype(np.float64) * resolution_uv * 1e-3
    return RawECG(signal=signal, leads=list(_PHILIPS_KEEP), fs=fs, format="philips")
