"""``write_reports`` / ``medcl ecg report`` end to end on real records with a tiny ProtoECGNet checkpoint.

The checkpoint is built by hand in the documented ``"medcl"`` format (untrained tiny network,
projection provenance pointing at real records) so the whole path runs in seconds: reading,
the real ``predict``, batched Integrated Gradients on the real network, rendering, failures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

REAL = ("HR06000", "HR06001", "E07500")


def _projection(net, sources: list[str]) -> dict:
    """Provenance for every prototype of every branch: source record, labels and a window."""
    from medcl.nets.protoecg import BRANCHES

    out = {}
    for b in BRANCHES:
        n = net.branches[b].prototypes.num_prototypes
        k = np.arange(n)
        start = (100 + 37 * k) % 800
        whole = b != "morphology"
        out[b] = {"sample": k.tolist(), "record": [sources[i % len(sources)] for i in k],
                  "labels": [["SR", "NORM"]] * n,
                  "start": np.where(whole, 0, start).tolist(), "end": np.where(whole, 1000, start + 60).tolist(),
                  "start_s": np.where(whole, 0.0, start / 100).tolist(),
                  "end_s": np.where(whole, 10.0, (start + 60) / 100).tolist()}
    return out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, repo_root, shared_data) -> Path:
    from medcl.config import load_config
    from medcl.data.ptbxl import packaged_statements
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups

    torch.manual_seed(0)
    cfg = load_config(ECGConfig, repo_root / "configs" / "ecg" / "tiny.yaml", [])
    labels = packaged_statements()["code"].tolist()
    net = build_net(cfg, label_groups(labels), len(labels))
    with torch.no_grad():
        net.fusion.bias.fill_(2.0)  # every label above threshold: all findings get rendered
    sources = [str(shared_data / "ecg" / "cinc2021-sample" / n) for n in ("HR06002", "HR06003")]
    payload = {"family": "ecg", "config": cfg.model_dump(mode="json"), "label_map": {c: i for i, c in enumerate(labels)},
               "state_dict": net.state_dict(), "versions": {},
               "extra": {"head": "fusion", "thresholds": [0.99] * (len(labels) - 2) + [0.5, 0.5],
                         "projection": _projection(net, sources)}}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"medcl": payload}, path)
    return path


@pytest.fixture(scope="module")
def written(tiny_checkpoint, shared_data, tmp_path_factory):
    from medcl.pipelines.ecg_report import write_reports

    folder = shared_data / "ecg" / "cinc2021-sample"
    broken = tmp_path_factory.mktemp("broken")
    (broken / "bad.hea").write_text("bad 12 500 5000\n")  # header without signal lines
    out = tmp_path_factory.mktemp("reports")
    records = [folder / f"{n}.hea" for n in REAL] + [broken / "bad.hea"]
    index = write_reports(records, tiny_checkpoint, out, ig_steps=4)
    return out, index, json.loads((out / "report.json").read_text())


def test_reports_index_and_failures(written):
    out, index, report = written
    assert index == out / "index.html" and index.is_file()
    status = {e["record_id"]: e["status"] for e in report["records"]}
    assert status == {"HR06000": "ok", "HR06001": "ok", "E07500": "ok", "bad": "error"}
    for name in REAL:
        assert (out / f"{name}.html").is_file()
    assert "bad" in (out / "index.html").read_text()
    # a checkpoint without extra["model_card"]: honest fallback and a banner, file names only
    assert report["model_card"]["recorded"] is False and report["model_card"]["synthetic"] is None
    assert report["checkpoint"] == "tiny.ckpt"
    page = (out / "HR06000.html").read_text()
    assert "Unvalidated model." in page and "not recorded in the checkpoint" in page


def test_findings_follow_thresholds_and_carry_prototypes_and_attributions(written):
    _, _, report = written
    ok = [e for e in report["records"] if e["status"] == "ok"]
    labels = report["labels"]
    for e in ok:
        codes = [f["code"] for f in e["findings"]]
        assert set(codes) <= set(labels[-2:])  # only the two labels with threshold 0.5 can pass
        assert e["meta"]["fs"] == 500.0 and e["meta"]["duration_s"] == pytest.approx(10.0)
        for f in e["findings"]:
            assert f["probability"] >= f["threshold"]
            assert len(f["prototypes"]) == 3
            assert all(p["source_record"] in ("HR06002", "HR06003") for p in f["prototypes"])
            assert sum(f["attribution"]["lead_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(len(e["findings"]) for e in ok) > 0


def test_cli_report_help_and_error(tmp_path, capsys):
    from medcl.cli import main

    code = main(["ecg", "report", str(tmp_path / "missing.hea"), "--checkpoint", str(tmp_path / "none.ckpt"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "none.ckpt: checkpoint not found" in capsys.readouterr().err


def test_predict_and_report_cli_accept_every_format(tiny_checkpoint, shared_data, tmp_path, capsys):
    """`medcl ecg predict`/`report` on SPH HDF5, DICOM waveform, a .npy with --fs/--leads and a bad XML."""
    from pydicom.data import get_testdata_file

    from medcl.cli import main
    from medcl.io.ecg import read_ecg

    h5 = shared_data / "ecg" / "challenge-mix" / "tuijalei-SPH" / "SPH00002.h5"
    dcm = get_testdata_file("waveform_ecg.dcm")
    npy = tmp_path / "cart.npy"
    eight = read_ecg(h5, fs=250, highpass=None).signal[[0, 1, *range(6, 12)]]
    np.save(npy, eight)
    (tmp_path / "bad.xml").write_text("<RestingECG>")
    args = [str(h5), dcm, str(npy), str(tmp_path / "bad.xml"), "--checkpoint", str(tiny_checkpoint),
            "--fs", "250", "--leads", "I,II,V1,V2,V3,V4,V5,V6"]
    assert main(["ecg", "predict", *args, "--out", str(tmp_path / "pred")]) == 1  # one bad file
    assert "predicted 3 of 4 records" in capsys.readouterr().out
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert [Path(r["record"]).name for r in preds["records"]] == ["SPH00002.h5", "waveform_ecg.dcm", "cart.npy"]
    assert [r["meta"]["fs"] for r in preds["records"]] == [500.0, 1000.0, 250.0]
    assert main(["ecg", "report", *args, "--out", str(tmp_path / "rep"), "--ig-steps", "2"]) == 1  # one bad file: exit 1, the rest reported
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    status = {e["record"]: e["status"] for e in report["records"]}
    assert status == {"SPH00002.h5": "ok", "waveform_ecg.dcm": "ok", "cart.npy": "ok", "bad.xml": "error"}
    derived = {e["record"]: e["derived_leads"] for e in report["records"] if e["status"] == "ok"}
    assert derived["cart.npy"] == ["III", "aVR", "aVL", "aVF"] and derived["SPH00002.h5"] == []


def test_report_loads_the_checkpoint_once_and_reads_each_record_once(tiny_checkpoint, shared_data, tmp_path,
                                                                      monkeypatch):
    import collections

    import medcl.io.ecg as io_ecg
    import medcl.pipelines.ecg_model as ecg_model
    from medcl.pipelines.ecg_report import write_reports

    loads, reads = [], collections.Counter()
    load, read_raw = ecg_model.load_model_checkpoint, io_ecg.read_raw_ecg
    monkeypatch.setattr(ecg_model, "load_model_checkpoint", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    monkeypatch.setattr(io_ecg, "read_raw_ecg",
                        lambda path, *a, **k: reads.update([io_ecg.record_name(path)]) or read_raw(path, *a, **k))
    folder = shared_data / "ecg" / "cinc2021-sample"
    records = [str(folder / n) for n in REAL[:2]]
    write_reports([f"{r}.hea" for r in records], tiny_checkpoint, tmp_path / "out", ig_steps=2)
    assert loads == [tiny_checkpoint]
    assert {r: reads[r] for r in records} == dict.fromkeys(records, 1)
    assert (tmp_path / "out" / f"{Path(records[0]).name}.html").is_file()
