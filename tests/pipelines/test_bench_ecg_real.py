"""``medcl bench ecg-real`` machinery on a small slice of the real PTB-XL subset (tiny model, 2 epochs)."""

from __future__ import annotations

import argparse
import json
import math

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def small_real(shared_data, tmp_path_factory):
    """A PTB-XL-layout folder of 90 real records (10 per fold) pointing at the shared files."""
    src = shared_data / "ecg" / "ptbxl-real-subset"
    db = pd.read_csv(src / "ptbxl_database.csv")
    db = db.groupby("strat_fold", group_keys=False).head(10)
    for col in ("filename_lr", "filename_hr"):
        db[col] = [str(src / f) for f in db[col]]
    root = tmp_path_factory.mktemp("ptbxl-small")
    db.to_csv(root / "ptbxl_database.csv", index=False)
    (root / "scp_statements.csv").write_text((src / "scp_statements.csv").read_text())
    return root


def _args(**kw) -> argparse.Namespace:
    from medcl.pipelines.bench import ecg_real

    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    ecg_real.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", *([str(x) for x in v] if isinstance(v, list) else [str(v)])]
    return parser.parse_args(argv)


def test_bench_ecg_real_schema_and_sane_values(small_real, shared_data, tmp_path, capsys):
    from medcl.cli import main

    out = tmp_path / "bench"
    argv = ["bench", "ecg-real", "--quick", "--out", str(out), "--data", str(small_real), "--threads", "1",
            "--epochs", "2", "--head-epochs", "1", "--width", "4", "--bootstrap", "20", "--min-positives", "2",
            "--cross-source", str(shared_data / "ecg" / "cinc2021-sample"),
            "--set", "model.proto_dim=8", "model.layers=[1, 1, 1, 1]", "model.per_class={rhythm: 1, morphology: 1, global: 1}"]
    assert main(argv) == 0
    res = json.loads((out / "ecg_real.json").read_text())
    assert res["data"]["real"] and res["data"]["n_train"] == 70 and res["data"]["n_test"] == 10
    models = res["models"]
    for name in ("protoecgnet_fused", "baseline_resnet1d"):
        macro = models[name]["macro"]
        assert set(macro) == {"full-fold", "reference-batchwise", "ptbxl-benchmark"}
        value = macro["full-fold"]["value"]
        assert 0.0 <= value <= 1.0 and macro["ptbxl-benchmark"]["value"] == pytest.approx(value)
        assert macro["ptbxl-benchmark"]["level"] == 0.90 and macro["full-fold"]["level"] == 0.95
        assert 0.0 <= macro["reference-batchwise"]["value"] <= 1.0  # 10 test records: one batch
        assert macro["reference-batchwise"]["n_batches"] == 1
    for b in ("rhythm", "morphology", "global"):
        assert set(models[f"protoecgnet_{b}"]) == {"from_fusion_contribution", "from_joint_branch_head"}
    assert all(v is None or 0 <= v <= 1 for v in models["protoecgnet_fused"]["per_class"].values())
    assert set(res["timing_s"]) >= {"joint", "project", "fusion", "baseline", "evaluate", "cross_source", "total"}
    assert all(v > 0 for v in res["timing_s"].values())
    cross = res["cross_source"]["cinc2021-sample"]
    assert cross["n_records"] == 20 and cross["positives"].get("SR", 0) >= 2
    assert res["targets_met"].keys() == {"macro_auroc", "afib_auroc"}
    # projected prototypes come from real training ECGs of their own class
    proj = res["projection"]
    assert proj["projected"] > 0 and proj["all_projected_from_own_class_training_ecgs"]
    # the checkpoint is an ECG model usable by predict, z-scoring inside
    from medcl.pipelines.ecg import predict
    from medcl.pipelines.ecg_model import load_model

    ckpt = out / "checkpoints" / "ecg_real.ckpt"
    _, cfg, _, extra = load_model(ckpt)
    assert cfg.data.normalize == "zscore" and extra["head"] == "fusion"
    pred = predict([str(shared_data / "ecg" / "cinc2021-sample" / "HR06000")], ckpt)
    # `medcl ecg evaluate` on the same checkpoint and folder agrees with the bench, estimator by estimator
    for estimator in ("full-fold", "reference-batchwise", "ptbxl-benchmark"):
        assert main(["ecg", "evaluate", "--checkpoint", str(ckpt), "--data", str(small_real), "--out",
                     str(tmp_path / estimator), "--estimator", estimator, "--min-positives", "2",
                     "--bootstrap", "20"]) == 0
        ev = json.loads((tmp_path / estimator / "results.json").read_text())
        assert ev["estimator"] == estimator and ev["fused"]["macro"]["value"] == pytest.approx(
            models["protoecgnet_fused"]["macro"][estimator]["value"], abs=1e-6)
        assert ev["branches"]["rhythm"]["source"] == "contribution"
        assert ev["branches"]["rhythm"]["macro"]["value"] == pytest.approx(
            models["protoecgnet_rhythm"]["from_fusion_contribution"]["macro"][estimator]["value"], abs=1e-6)
    assert "branch contribution" in capsys.readouterr().out
    probs = pred["records"][0]["probabilities"]
    assert len(probs) == 71 and all(0 <= p <= 1 and not math.isnan(p) for p in probs.values())


def test_bench_ecg_real_skips_cleanly_without_data(tmp_path):
    from medcl.pipelines.bench import ecg_real

    res = ecg_real.run(_args(data=tmp_path / "absent", out=tmp_path / "o"))
    assert "skipped" in res and "absent" in res["skipped"]
    assert not (tmp_path / "o").exists()
