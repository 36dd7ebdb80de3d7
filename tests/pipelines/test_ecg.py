"""End to end on a synthetic PTB-XL-shaped folder: joint -> project -> fusion, evaluate, predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medcl.errors import MedclError

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from medcl.data.synthetic.ecg import write_dataset

    root = tmp_path_factory.mktemp("synth-ptbxl")
    write_dataset(root, 200, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    from medcl.config import load_config
    from medcl.pipelines.ecg import ECGConfig, train

    out = tmp_path_factory.mktemp("ecg-run")
    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml", [
        f"data.root={synth}", f"data.cache_dir={out / 'cache'}", "train.max_epochs=3", "optim.head_epochs=3",
        "train.progress_bar=false", "train.loggers=[]",
    ])
    ckpt = train(cfg, out / "run", stages=("joint", "project", "fusion"))
    return ckpt, out


@pytest.mark.slow
def test_fused_model_learns_and_prototypes_come_from_their_class(trained, synth):
    from medcl.data.ptbxl import load_label_groups
    from medcl.engine import load_model_checkpoint
    from medcl.pipelines.ecg import evaluate

    ckpt, out = trained
    data = load_model_checkpoint(ckpt, "ecg")
    assert data.extra["head"] == "fusion" and len(data.extra["thresholds"]) == 71
    from medcl.explain.model_card import model_card

    card = model_card(data.extra)  # the report's view of the stored card
    assert card["synthetic"] is True and card["dataset"] == synth.name and str(synth) not in str(data.extra["model_card"])
    assert card["n_train"] > card["n_validation"] > 0 and 0.0 <= card["validation_macro_auroc"] <= 1.0
    for branch, prov in data.extra["projection"].items():
        per_class = data.config["model"]["per_class"][branch]
        assert any(prov["labels"])  # sources were found
        for j, labels in enumerate(prov["labels"]):
            if int(prov["sample"][j]) < 0:
                continue
            own = load_label_groups()[branch][j // per_class]
            assert own in labels, f"{branch} prototype {j} of {own} projected onto a record with {labels}"
            assert Path(prov["record"][j] + ".hea").is_file()
            assert 0 <= int(prov["start"][j]) < int(prov["end"][j]) <= 1000
    res = evaluate(ckpt, synth, out / "eval", n_boot=100)
    assert res["fused"]["n_classes_used"] >= 5
    assert res["fused"]["macro"]["value"] > 0.65, res["fused"]["macro"]  # chance is 0.5
    assert res["fused"]["macro"]["ci"][0] > 0.55
    assert (out / "eval" / "per_class.csv").is_file()
    assert res["fused"]["excluded"] and all(v is None for k, v in res["fused"]["per_class"].items()
                                             if k in res["fused"]["excluded"])


@pytest.mark.slow
def test_rerun_skips_finished_stages(trained, synth):
    from medcl.config import load_config
    from medcl.pipelines.ecg import ECGConfig, train

    ckpt, out = trained
    stamp = {s: (out / "run" / "checkpoints" / s / "model.ckpt").stat().st_mtime_ns for s in ("joint", "project", "fusion")}
    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml", [f"data.root={synth}", f"data.cache_dir={out / 'cache'}"])
    train(cfg, out / "run", stages=("joint", "project", "fusion"))
    assert stamp == {s: (out / "run" / "checkpoints" / s / "model.ckpt").stat().st_mtime_ns for s in stamp}


@pytest.mark.slow
def test_run_folder_of_the_older_layout_resumes(trained, synth, tmp_path):
    """``<out>/<stage>/model.ckpt`` (the layout before one layout for every family) still resumes a chain."""
    import shutil

    from medcl.config import load_config
    from medcl.pipelines.ecg import ECGConfig, train
    from medcl.pipelines.ecg_model import load_model

    ckpt, out = trained
    old = tmp_path / "old-run"
    for s in ("joint", "project"):
        (old / s).mkdir(parents=True)
        shutil.copyfile(out / "run" / "checkpoints" / s / "model.ckpt", old / s / "model.ckpt")
    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml", [
        f"data.root={synth}", f"data.cache_dir={out / 'cache'}", "train.progress_bar=false", "train.loggers=[]",
        "optim.head_epochs=1"])
    final = train(cfg, old, stages=("fusion",))  # starts from the older folder's project stage
    assert final == old / "model.ckpt" and (old / "checkpoints" / "fusion" / "model.ckpt").is_file()
    assert load_model(final).extra["stages"] == ["joint", "project", "fusion"]


def _write_record(path: Path, signal: np.ndarray, fs: int, names: list[str]) -> None:
    import wfdb

    path.parent.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(path.name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=signal.T,
                fmt=["16"] * len(names), adc_gain=[1000.0] * len(names), baseline=[0] * len(names),
                write_dir=str(path.parent))


@pytest.mark.slow
def test_predict_real_records_and_bad_inputs(trained, shared_data, tmp_path):
    from medcl.io.ecg import LEADS
    from medcl.pipelines.ecg import predict

    ckpt, _ = trained
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad"
    _write_record(bad / "short", rng.normal(0, 0.1, (12, 1000)), 500, list(LEADS))  # 2 s
    _write_record(bad / "nolead", rng.normal(0, 0.1, (11, 5000)), 500, list(LEADS[:-1]))  # no V6
    nan = rng.normal(0, 0.1, (12, 5000))
    nan[3, 100:200] = np.nan
    _write_record(bad / "nan", nan, 500, list(LEADS))
    real = [shared_data / "ecg/cinc2021-sample/HR06000", shared_data / "ecg/cinc2021-sample/E07500.mat",
            shared_data / "ecg/ptb-diagnostic/s0010_re"]
    inputs = [str(p) for p in real] + [str(bad / n) for n in ("short", "nolead", "nan")]
    res = predict(inputs, ckpt, out_dir=tmp_path / "out", batch_size=2)
    assert [r["record"] for r in res["records"]] == [str(p) for p in real]
    for r in res["records"]:
        assert len(r["probabilities"]) == 71 and all(0 <= p <= 1 for p in r["probabilities"].values())
        for f in r["findings"]:
            assert f["probability"] >= f["threshold"] and f["prototypes"]
            top = f["prototypes"][0]
            assert top["contribution"] == pytest.approx(top["weight"] * top["similarity"])
            assert top["contribution"] >= f["prototypes"][-1]["contribution"]
    errors = {e["record"]: e["error"] for e in res["errors"]}
    assert "V6" in errors[str(bad / "nolead")]
    assert str(bad / "short") in errors
    assert "aVR" in errors[str(bad / "nan")]
    with open(tmp_path / "out" / "predictions.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "record" and len(rows[0]) == 72 and len(rows) == 4
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert set(saved) == {"labels", "thresholds", "records"}
    assert (tmp_path / "out" / "errors.csv").read_text().count("\n") == 4


@pytest.mark.slow
def test_predict_refuses_empty_folder_and_other_family(trained, tmp_path):
    from medcl.cli import main
    from medcl.pipelines.ecg import predict

    ckpt, _ = trained
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedclError, match="folder holds no ECG files"):
        predict([tmp_path / "empty"], ckpt)
    other = tmp_path / "zones.ckpt"
    torch.save({"medcl": {"family": "zones", "state_dict": {}}}, other)
    with pytest.raises(MedclError, match="family 'zones'"):
        predict([str(ckpt)], other)
    assert main(["ecg", "predict", str(tmp_path / "empty"), "--checkpoint", str(ckpt)]) == 2
