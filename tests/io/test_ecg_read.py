"""medcl.io.ecg: real WFDB records, lead mapping, units, resampling, filtering, corrupt inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy import signal as sps

from medcl.errors import MedclError
from medcl.io.ecg import (
    LEADS,
    fit_length,
    highpass,
    inspect_ecg,
    parse_comments,
    read_ecg,
    snomed_to_scp,
)

CINC = [f"HR0600{i}" for i in range(10)] + [f"E0750{i}" for i in range(10)]


def _write(tmp: Path, name: str, sig: np.ndarray, fs: int, leads: list[str], units: str = "mV", **kw) -> Path:
    wfdb.wrsamp(
        name, fs=fs, units=[units] * len(leads), sig_name=leads, p_signal=sig.T.astype(float),
        fmt=["16"] * len(leads), adc_gain=[1000.0] * len(leads), baseline=[0] * len(leads),
        write_dir=str(tmp), **kw,
    )
    return tmp / name


@pytest.mark.parametrize("name", CINC)
def test_cinc_records_read_as_12_leads_in_mv(shared_data: Path, name: str) -> None:
    path = shared_data / "ecg" / "cinc2021-sample" / f"{name}.hea"
    rec = read_ecg(path, fs=500, highpass=None)
    header_lines = path.read_text().splitlines()[1:13]
    first = np.array([int(line.split()[5]) for line in header_lines]) / 1000.0  # initial value / gain
    assert rec.signal.shape == (12, 5000) and rec.signal.dtype == np.float32
    assert rec.fs == 500 and rec.source_fs == 500 and rec.source_n_samples == 5000
    np.testing.assert_allclose(rec.signal[:, 0], first, atol=1e-6)
    raw = wfdb.rdrecord(str(path.with_suffix("")))
    np.testing.assert_allclose(rec.signal, raw.p_signal.T, atol=1e-6)
    assert rec.dx_snomed and rec.age is not None and rec.sex in ("M", "F")


def test_hr06000_metadata_and_scp_mapping(shared_data: Path) -> None:
    rec = read_ecg(shared_data / "ecg" / "cinc2021-sample" / "HR06000")
    assert (rec.age, rec.sex, rec.dx_snomed) == (59.0, "F", ["164934002", "426783006"])
    assert rec.scp_codes == ["TAB_", "SR"]
    assert rec.signal.shape == (12, 1000) and rec.record_id == "HR06000"


def test_resampling_matches_independent_fft_resample(shared_data: Path) -> None:
    path = shared_data / "ecg" / "cinc2021-sample" / "HR06003"
    raw = wfdb.rdrecord(str(path)).p_signal.T
    ours = read_ecg(path, fs=100, highpass=None).signal
    fft = sps.resample(raw, 1000, axis=-1)  # Fourier-domain resampling: a different method
    inner = slice(50, 950)  # away from the edges, where the two methods handle boundaries differently
    assert ours.shape == (12, 1000)
    np.testing.assert_allclose(ours[:, inner], fft[:, inner], atol=0.02 * np.abs(raw).max())


def test_multifile_ptb_record_drops_frank_leads(shared_data: Path) -> None:
    path = shared_data / "ecg" / "ptb-diagnostic" / "s0010_re"
    raw = wfdb.rdrecord(str(path))
    rec = read_ecg(path, fs=None, highpass=None)
    assert rec.fs == 1000 and rec.source_fs == 1000 and rec.signal.shape == (12, 38400)
    np.testing.assert_allclose(rec.signal, raw.p_signal[:, :12].T, atol=1e-6)  # i..v6 in order; vx/vy/vz dropped
    assert (rec.age, rec.sex) == (81.0, "F")
    assert read_ecg(path, fs=100, n_samples=1000).signal.shape == (12, 1000)
    info = inspect_ecg(path.with_suffix(".hea"))
    assert info["fs"] == 1000 and info["n_samples"] == 38400 and len(info["leads"]) == 15
    assert info["files"] == ["s0010_re.dat", "s0010_re.xyz"] and info["units"][0] == "mV"


def test_leads_reordered_case_insensitively_and_units_converted(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sig = rng.normal(0, 1, (12, 500))  # mV, standard order
    order = [5, 0, 11, 3, 1, 2, 4, 6, 7, 8, 9, 10]  # file column k holds lead order[k]
    names = [LEADS[i].upper() for i in order] + ["vx"]
    in_file = np.concatenate([sig[order], rng.normal(0, 1, (1, 500))]) * 1000.0  # in uV
    wfdb.wrsamp("shuffled", fs=500, units=["uV"] * 13, sig_name=names, p_signal=in_file.T,
                fmt=["16"] * 13, adc_gain=[1.0] * 13, baseline=[0] * 13, write_dir=str(tmp_path))
    rec = read_ecg(tmp_path / "shuffled", fs=500, highpass=None)
    np.testing.assert_allclose(rec.signal, sig, atol=1e-3)


def test_format_212_record_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sig = np.round(rng.normal(0, 0.5, (12, 2000)) * 200) / 200  # representable at gain 200/mV
    wfdb.wrsamp("f212", fs=250, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T,
                fmt=["212"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    rec = read_ecg(tmp_path / "f212.dat", fs=250, highpass=None)
    np.testing.assert_allclose(rec.signal, sig, atol=1e-6)
    down = read_ecg(tmp_path / "f212", fs=100, highpass=None).signal
    np.testing.assert_allclose(down, sps.resample_poly(sig, 2, 5, axis=-1), atol=1e-5)


def test_missing_leads_are_named(tmp_path: Path) -> None:
    leads = list(LEADS[:10]) + ["X", "Y"]
    base = _write(tmp_path, "nolead", np.zeros((12, 1000)), 100, leads)
    with pytest.raises(MedclError, match=r"missing leads V5, V6"):
        read_ecg(base)


def test_nan_samples_rejected(tmp_path: Path) -> None:
    sig = np.zeros((12, 1000))
    sig[3, 10] = np.nan
    base = _write(tmp_path, "nan", sig, 100, list(LEADS))
    with pytest.raises(MedclError, match=r"NaN.*aVR"):
        read_ecg(base)


def test_truncated_data_and_missing_file(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "ecg" / "cinc2021-sample"
    for ext in (".hea", ".mat"):
        shutil.copy(src / f"HR06001{ext}", tmp_path / f"HR06001{ext}")
    mat = tmp_path / "HR06001.mat"
    mat.write_bytes(mat.read_bytes()[:5000])
    with pytest.raises(MedclError, match="header and data disagree"):
        read_ecg(tmp_path / "HR06001")
    mat.unlink()
    with pytest.raises(MedclError, match="HR06001.mat, which does not exist"):
        read_ecg(tmp_path / "HR06001.hea")
    with pytest.raises(MedclError, match="header not found"):
        read_ecg(tmp_path / "nothing")


def test_dat_truncated_at_a_frame_boundary(tmp_path: Path) -> None:
    base = _write(tmp_path, "cut", np.zeros((12, 1000)), 100, list(LEADS))
    dat = base.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: 24 * 500])  # 500 whole frames of 12 int16 samples
    with pytest.raises(MedclError, match="cut.dat: holds 12000 bytes.*need 24000"):
        read_ecg(base)


def test_dat_longer_than_header(tmp_path: Path) -> None:
    base = _write(tmp_path, "long", np.zeros((12, 1000)), 100, list(LEADS))
    dat = base.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes() * 2)  # 2000 frames for a header of 1000
    with pytest.raises(MedclError, match="long.dat: holds 48000 bytes.*need 24000; header and data disagree"):
        read_ecg(base)


def test_short_record_policy(tmp_path: Path) -> None:
    base = _write(tmp_path, "short", np.random.default_rng(0).normal(size=(12, 1000)), 500, list(LEADS))  # 2 s
    with pytest.raises(MedclError, match="needs at least 900 of 1000"):
        read_ecg(base, fs=100, n_samples=1000)
    padded = fit_length(np.ones((12, 950)), 1000, "x")
    assert padded.shape == (12, 1000) and padded[:, 949].all() and not padded[:, 950:].any()
    ramp = np.arange(20.0)[None]
    np.testing.assert_array_equal(fit_length(ramp, 10, "x"), ramp[:, :10])
    np.testing.assert_array_equal(fit_length(ramp, 10, "x", crop="center"), ramp[:, 5:15])


def test_highpass_removes_baseline_and_keeps_qrs_band() -> None:
    fs = 100
    t = np.arange(3000) / fs
    slow = np.sin(2 * np.pi * 0.05 * t)  # baseline wander
    fast = np.sin(2 * np.pi * 10.0 * t)
    out = highpass(slow + fast, fs, 0.5)
    mid = slice(500, 2500)
    assert np.abs(out[mid] - fast[mid]).max() < 0.05
    # zero phase: the 10 Hz component is not delayed (a causal filter would shift it)
    assert np.corrcoef(out[mid], fast[mid])[0, 1] > 0.999
    # first-order Butterworth (filtfilt squares the magnitude): |H(0.5 Hz)|^2 = 0.5
    tone = np.sin(2 * np.pi * 0.5 * t)
    gain = np.abs(highpass(tone, fs, 0.5)[mid]).max()
    assert gain == pytest.approx(0.5, abs=0.03)


def test_comment_parsing_and_snomed_table() -> None:
    meta = parse_comments(["Age: NaN", "Sex: Unknown", "Dx: 164889003, 59118001,1"])
    assert meta == {"age": None, "sex": None, "dx_snomed": ["164889003", "59118001", "1"]}
    assert snomed_to_scp(["164889003", "59118001", "1", "733534002", "164909002"]) == ["AFIB", "CRBBB", "CLBBB"]
    assert snomed_to_scp(["270492004", "427084000", "426177001", "164873001", "59931005"]) == [
        "1AVB", "STACH", "SBRAD", "LVH", "INVT"
    ]
    assert snomed_to_scp(["164865005", "39732003"]) == []  # MI (ambiguous) and axis: no SCP equivalent


def test_header_without_signal_lines(tmp_path: Path) -> None:
    (tmp_path / "bad.hea").write_text("bad 12 500 5000\n")
    with pytest.raises(MedclError, match="bad.hea: header declares no signal lines"):
        read_ecg(tmp_path / "bad.hea")
