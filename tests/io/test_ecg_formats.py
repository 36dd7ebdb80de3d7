"""ECG readers beyond WFDB: DICOM waveform, HDF5 (SPH), HL7 aECG, GE MUSE, Philips XML, arrays.

Each format is read from a real file where one exists (pydicom's ``waveform_ecg.dcm``, the SPH
records) and from a file the test writes with known values; bad files give one-line errors.
"""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medcl.errors import MedclError
from medcl.io.ecg import LEADS, find_records, inspect_ecg, read_ecg
from medcl.io.ecg_formats import detect_format

EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
SPH = "ecg/challenge-mix/tuijalei-SPH"


def _eight_lead(n: int, seed: int = 0) -> np.ndarray:
    """Integer-valued test signal (8, n) so that every format stores it exactly."""
    return np.random.default_rng(seed).integers(-400, 400, size=(8, n)).astype(np.float64)


def _check_derived(sig: np.ndarray, one: np.ndarray, two: np.ndarray) -> None:
    """Einthoven/Goldberger: III = II - I, aVR = -(I+II)/2, aVL = I - II/2, aVF = II - I/2."""
    np.testing.assert_allclose(sig[2], two - one, atol=1e-5)
    np.testing.assert_allclose(sig[3], -(one + two) / 2, atol=1e-5)
    np.testing.assert_allclose(sig[4], one - two / 2, atol=1e-5)
    np.testing.assert_allclose(sig[5], two - one / 2, atol=1e-5)


# ------------------------------------------------------------------------------------------- DICOM
def test_dicom_real_waveform_file_in_mv():
    path = get_testdata_file("waveform_ecg.dcm")
    rec = read_ecg(path, fs=None, highpass=None)
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.WaveformSequence[0].WaveformData, "<i2").reshape(10000, 12)  # stored integers
    assert rec.format == "dicom" and rec.fs == 1000 and rec.signal.shape == (12, 10000)
    assert rec.derived_leads == [] and (rec.age, rec.sex) == (42.0, "F")
    # channel sensitivity 1.25 uV per unit, baseline 0, correction 1 (read off the file's header)
    np.testing.assert_allclose(rec.signal, raw.T * 1.25e-3, atol=1e-6)
    assert rec.signal[0, 0] == pytest.approx(0.1)  # 80 units x 1.25 uV


def test_dicom_written_8_lead_file_gets_limb_leads_derived(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = ds.WaveformSequence[0]
    keep = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1-V6
    data = _eight_lead(group.NumberOfWaveformSamples)
    group.ChannelDefinitionSequence = [group.ChannelDefinitionSequence[k] for k in keep]
    group.NumberOfWaveformChannels = 8
    group.WaveformData = data.T.astype("<i2").tobytes()
    del ds.WaveformSequence[1]
    out = tmp_path / "eight.dcm"
    ds.save_as(out)
    rec = read_ecg(out, fs=None, highpass=None)
    mv = data * 1.25e-3
    assert rec.derived_leads == ["III", "aVR", "aVL", "aVF"]
    np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], mv, atol=1e-6)
    _check_derived(rec.signal, mv[0], mv[1])


def test_dicom_bad_files_give_one_line_errors(tmp_path):
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(Path(get_testdata_file("waveform_ecg.dcm")).read_bytes()[:3000])
    image = get_testdata_file("CT_small.dcm")
    for path, msg in [(truncated, "cut.dcm: "), (image, "no WaveformSequence")]:
        with pytest.raises(MedclError, match=msg) as err:
            read_ecg(path)
        assert "\n" not in str(err.value)


# -------------------------------------------------------------------------------------------- HDF5
def test_sph_real_records_with_metadata_labels(shared_data):
    folder = shared_data / SPH
    with (folder / "metadata.csv").open() as fh:
        meta = {r["ECG_ID"]: r for r in csv.DictReader(fh)}
    paths = find_records([folder])
    assert len(paths) == 10 and all(p.endswith(".h5") for p in paths)
    for path in paths:
        rec = read_ecg(path, fs=None, highpass=None)
        with h5py.File(path) as fh:
            stored = fh["ecg"][()].astype(np.float64)
        assert rec.format == "hdf5" and rec.fs == 500 and rec.signal.shape == stored.shape
        np.testing.assert_allclose(rec.signal, stored, atol=1e-6)  # SPH stores mV
        row = meta.get(Path(path).name)
        if row is None:  # SPH00005 has no metadata row in this subset: no labels, no demographics
            assert (rec.age, rec.sex, rec.dx_snomed) == (None, None, [])
            continue
        assert rec.signal.shape == (12, int(row["N"]))
        assert rec.age == float(row["Age"]) and rec.sex == row["Sex"]
        assert rec.dx_snomed == [c.strip() for c in row["SNOMEDCTCode"].split(",")]
    assert read_ecg(folder / "SPH00002.h5").scp_codes == ["SR"]  # 426783006 = sinus rhythm


def test_hdf5_written_8_leads_with_attributes(tmp_path):
    data = _eight_lead(2500) / 100
    path = tmp_path / "rec.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("ecg", data=data)
        ds.attrs["fs"] = 250.0
        ds.attrs["leads"] = EIGHT
    rec = read_ecg(path, fs=None, highpass=None)
    assert rec.fs == 250 and rec.signal.shape == (12, 2500) and rec.record_id == "rec"
    np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], data, atol=1e-6)
    _check_derived(rec.signal, data[0], data[1])


def test_hdf5_bad_files(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh.create_dataset("signal", data=np.zeros((12, 10)))
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all")
    for name, msg in [("other.h5", "no 'ecg' dataset"), ("junk.h5", "junk.h5: not a readable HDF5")]:
        with pytest.raises(MedclError, match=msg):
            read_ecg(tmp_path / name)


# ---------------------------------------------------------------------------------------- HL7 aECG
def _aecg(leads: list[str], data: np.ndarray, increment: str = '0.004" unit="s', scale_uv: float = 5.0) -> str:
    seqs = "".join(
        f'<component><sequence><code code="MDC_ECG_LEAD_{name.upper()}"/>'
        f'<value xsi:type="SLIST_PQ"><origin value="10" unit="uV"/><scale value="{scale_uv}" unit="uV"/>'
        f"<digits>{' '.join(str(int(v)) for v in row)}</digits></value></sequence></component>"
        for name, row in zip(leads, data)
    )
    return (
        '<?xml version="1.0"?><AnnotatedECG xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><component><series><code code="RHYTHM"/>'
        '<component><sequenceSet><component><sequence><code code="TIME_ABSOLUTE"/>'
        f'<value xsi:type="GLIST_TS"><head value="20240101"/><increment value="{increment}"/></value>'
        f"</sequence></component>{seqs}</sequenceSet></component></series></component></AnnotatedECG>"
    )


def test_hl7_aecg_written_file_origin_scale_and_rate(tmp_path):
    data = _eight_lead(1000)
    path = tmp_path / "aecg.xml"
    path.write_text(_aecg(EIGHT, data))
    assert detect_format(path) == "hl7-aecg"
    rec = read_ecg(path, fs=None, highpass=None)
    mv = (10 + 5 * data) * 1e-3  # origin 10 uV + 5 uV per digit
    assert rec.fs == pytest.approx(250) and rec.signal.shape == (12, 1000)
    np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], mv, atol=1e-6)
    _check_derived(rec.signal, mv[0], mv[1])


def test_hostile_and_malformed_xml_are_refused(tmp_path):
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            "<AnnotatedECG>&lol2;</AnnotatedECG>")
    external = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                "<RestingECG>&x;</RestingECG>")
    (tmp_path / "bomb.xml").write_text(bomb)
    (tmp_path / "ext.xml").write_text(external)
    (tmp_path / "broken.xml").write_text("<AnnotatedECG><series>")
    (tmp_path / "other.xml").write_text("<svg/>")
    (tmp_path / "norate.xml").write_text(_aecg(EIGHT, _eight_lead(10)).replace("TIME_ABSOLUTE", "OTHER"))
    cases = [("bomb.xml", "refused hostile XML"), ("ext.xml", "refused hostile XML"),
             ("broken.xml", "malformed XML"), ("other.xml", "<svg> is not an HL7 aECG"),
             ("norate.xml", "sampling rate unknown")]
    for name, msg in cases:
        with pytest.raises(MedclError, match=msg) as err:
            read_ecg(tmp_path / name)
        assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------- GE MUSE
def _muse(data: np.ndarray, per_bit: float = 4.88, count: int | None = None) -> str:
    leads = "".join(
        f"<LeadData><LeadSampleCountTotal>{count or row.size}</LeadSampleCountTotal>"
        f"<LeadAmplitudeUnitsPerBit>{per_bit}</LeadAmplitudeUnitsPerBit>"
        f"<LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits><LeadID>{name}</LeadID>"
        f"<WaveFormData>{base64.b64encode(row.astype('<i2').tobytes()).decode()}</WaveFormData></LeadData>"
        for name, row in zip(EIGHT, data)
    )
    return (
        "<RestingECG><PatientDemographics><PatientAge>67</PatientAge><Gender>FEMALE</Gender>"
        "</PatientDemographics><Diagnosis><DiagnosisStatement><StmtText>Sinus rhythm</StmtText>"
        "</DiagnosisStatement></Diagnosis><Waveform><WaveformType>Median</WaveformType></Waveform>"
        "<Waveform><WaveformType>Rhythm</WaveformType><SampleBase>500</SampleBase>"
        f"<SampleExponent>0</SampleExponent>{leads}</Waveform></RestingECG>"
    )


def test_ge_muse_written_file(tmp_path):
    data = _eight_lead(5000)
    path = tmp_path / "muse.xml"
    path.write_text(_muse(data))
    rec = read_ecg(path, fs=None, highpass=None)
    mv = data * 4.88e-3
    assert rec.format == "ge-muse" and rec.fs == 500 and rec.signal.shape == (12, 5000)
    assert (rec.age, rec.sex, rec.comments) == (67.0, "F", ["Diagnosis: Sinus rhythm"])
    np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], mv, atol=1e-5)
    _check_derived(rec.signal, mv[0], mv[1])
    (tmp_path / "short.xml").write_text(_muse(data, count=6000))
    with pytest.raises(MedclError, match="holds 5000 samples; header says 6000"):
        read_ecg(tmp_path / "short.xml")


# ----------------------------------------------------------------------------------------- Philips
def _philips(data: np.ndarray, version: str = "1.04") -> str:
    # sierraecg splits uncompressed data into leads of duration(ms) x fs / 1000 samples
    twelve = np.zeros((12, data.shape[1]))
    twelve[[0, 1, *range(6, 12)]] = data
    payload = base64.b64encode(twelve.astype("<i2").tobytes()).decode()
    return (
        "<restingecgdata><documentinfo><documenttype>PhilipsECG</documenttype>"
        f"<documentversion>{version}</documentversion></documentinfo><dataacquisition><signalcharacteristics>"
        "<samplingrate>500</samplingrate><signalresolution>5</signalresolution>"
        "<acquisitiontype>STD-12</acquisitiontype><numberchannelsallocated>12</numberchannelsallocated>"
        "</signalcharacteristics></dataacquisition>"
        f'<waveforms><parsedwaveforms durationperchannel="{data.shape[1] * 2}" dataencoding="Base64" '
        f'compression="Uncompressed" numberofleads="12" '
        f'leadlabels="I II III aVR aVL aVF V1 V2 V3 V4 V5 V6">{payload}</parsedwaveforms></waveforms>'
        "</restingecgdata>"
    )


def test_philips_written_uncompressed_file(tmp_path):
    data = _eight_lead(5000)
    path = tmp_path / "philips.xml"
    path.write_text(_philips(data))
    rec = read_ecg(path, fs=None, highpass=None)
    mv = data * 5e-3  # 5 uV per unit
    assert rec.format == "philips" and rec.fs == 500 and rec.signal.shape == (12, 5000)
    np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], mv, atol=1e-6)
    _check_derived(rec.signal, mv[0], mv[1])
    (tmp_path / "old.xml").write_text(_philips(data, version="0.9"))
    with pytest.raises(MedclError, match="old.xml: Philips XML version 0.9 is not supported"):
        read_ecg(tmp_path / "old.xml")
    (tmp_path / "xli.xml").write_text(_philips(data).replace('compression="Uncompressed"', 'compression="XLI"'))
    with pytest.raises(MedclError, match="xli.xml: cannot decode Philips XML"):  # not XLI data: sierraecg fails
        read_ecg(tmp_path / "xli.xml")


# ------------------------------------------------------------------------------------------ arrays
def test_npy_and_csv_arrays_with_fs_and_leads(tmp_path):
    data = _eight_lead(1200) / 1000
    np.save(tmp_path / "a.npy", data.T)  # samples x channels
    with (tmp_path / "a.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(EIGHT)
        w.writerows(data.T.tolist())
    for name, leads in [("a.npy", EIGHT), ("a.csv", None)]:
        rec = read_ecg(tmp_path / name, fs=None, highpass=None, source_fs=120, source_leads=leads)
        assert rec.fs == 120 and rec.signal.shape == (12, 1200) and rec.format == "array"
        np.testing.assert_allclose(rec.signal[[0, 1, *range(6, 12)]], data, atol=1e-6)
    with pytest.raises(MedclError, match="a.npy: arrays carry no sampling rate; give it with --fs"):
        read_ecg(tmp_path / "a.npy", source_leads=EIGHT)
    with pytest.raises(MedclError, match="a.npy: array has no lead names"):
        read_ecg(tmp_path / "a.npy", source_fs=120)
    with pytest.raises(MedclError, match="but 3 lead names"):
        read_ecg(tmp_path / "a.npy", source_fs=120, source_leads=["I", "II", "V1"])


# ------------------------------------------------------------------------------------ batch and CLI
def test_a_batch_of_mixed_formats_reports_bad_files_and_finishes(tmp_path, shared_data):
    from medcl.pipelines.ecg_report import read_inputs

    data = _eight_lead(5000)
    (tmp_path / "muse.xml").write_text(_muse(data))
    (tmp_path / "bad.xml").write_text("<AnnotatedECG>")
    (tmp_path / "bad.h5").write_bytes(b"junk")
    records = [str(shared_data / SPH / "SPH00001.h5"), get_testdata_file("waveform_ecg.dcm"),
               *find_records([tmp_path])]
    ecgs, signals, failures = read_inputs(records)
    assert sorted(Path(r).name for r in ecgs) == ["SPH00001.h5", "muse.xml", "waveform_ecg.dcm"]
    assert all(s.shape == (12, 1000) for s in signals.values())
    assert sorted(Path(f["record"]).name for f in failures) == ["bad.h5", "bad.xml"]
    assert all("\n" not in f["error"] for f in failures)


def test_data_inspect_shows_every_format(tmp_path, shared_data, capsys):
    from medcl.cli import main

    (tmp_path / "muse.xml").write_text(_muse(_eight_lead(5000)))
    files = [(shared_data / SPH / "SPH00003.h5", "hdf5", 12, 6500), (tmp_path / "muse.xml", "ge-muse", 8, 5000),
             (Path(get_testdata_file("waveform_ecg.dcm")), "dicom", 12, 10000)]
    for path, fmt, n_leads, n in files:
        assert main(["data", "inspect", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert (info["kind"], info["format"], len(info["leads"]), info["n_samples"]) == ("ecg", fmt, n_leads, n)
    assert inspect_ecg(tmp_path / "muse.xml")["derived_leads"] == list(LEADS[2:6])
    np.save(tmp_path / "a.npy", _eight_lead(3000) / 1000)  # mV (+-0.4); +-400 "mV" is refused as no ECG
    assert main(["data", "inspect", str(tmp_path / "a.npy"), "--fs", "300", "--leads", ",".join(EIGHT), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["fs"], info["n_samples"], info["duration_s"]) == ("array", 300.0, 3000, 10.0)
    assert main(["data", "inspect", str(tmp_path / "a.npy")]) == 2
    assert "a.npy: arrays carry no sampling rate; give it with --fs" in capsys.readouterr().err


@pytest.mark.parametrize("fs_field", ["500", "500/1000", "500/1000(0)", "257.5", "1e3", ""])
def test_header_fs_agrees_with_wfdb(tmp_path, fs_field):
    """medcl reads the sampling rate from the record line itself (wfdb's header parser is slow and
    ``rdrecord`` runs it again); it must give what wfdb gives, including WFDB's 250 Hz default."""
    import wfdb

    from medcl.io.ecg import _header_fs, _header_lines

    fields = ["rec", "1", *([fs_field, "10"] if fs_field else [])]
    (tmp_path / "rec.hea").write_text(" ".join(fields) + "\n# a comment\nrec.dat 16 200/mV 16 0 0 0 0 I\n")
    base = tmp_path / "rec"
    assert _header_fs(base, _header_lines(base)) == float(wfdb.rdheader(str(base)).fs)
