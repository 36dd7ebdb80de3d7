"""Progress bars: quiet when stderr is not a terminal, shown when asked (flag or MEDCL_PROGRESS=1)."""

from __future__ import annotations

from pydicom.data import get_testdata_file

from medcl.utils import progress_bar


def test_quiet_without_a_terminal_and_shown_when_asked(capsys, monkeypatch):
    monkeypatch.delenv("MEDCL_PROGRESS", raising=False)
    assert list(progress_bar(range(3), "quiet")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    assert list(progress_bar(range(3), "forced", enable=True)) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "forced" in err and "/3 " in err  # a tqdm bar over 3 items (cleared at the end)


def test_report_reading_shows_progress_with_env(capsys, monkeypatch):
    from medcl.pipelines.ecg_report import read_inputs

    monkeypatch.setenv("MEDCL_PROGRESS", "1")
    ecgs, _, _ = read_inputs([get_testdata_file("waveform_ecg.dcm")])
    assert len(ecgs) == 1 and "reading ECGs" in capsys.readouterr().err
    monkeypatch.setenv("MEDCL_PROGRESS", "0")
    read_inputs([get_testdata_file("waveform_ecg.dcm")])
    assert capsys.readouterr().err == ""
