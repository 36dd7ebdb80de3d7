"""The model card ``medcl ecg train`` stores in the checkpoint (shown on every report)."""

from __future__ import annotations

import shutil

import numpy as np
from sklearn.metrics import roc_auc_score


def test_training_card_records_data_kind_sizes_and_validation_auroc(tmp_path, repo_root):
    from medcl.config import load_config
    from medcl.data.synthetic.ecg import TRUTH_FILE, write_dataset
    from medcl.engine.model_card import format_card
    from medcl.explain.model_card import model_card
    from medcl.pipelines.ecg import ECGConfig
    from medcl.pipelines.ecg_data import load_data
    from medcl.pipelines.ecg_train import training_card

    root = tmp_path / "synth-30"
    write_dataset(root, 30, seed=1)
    cfg = load_config(ECGConfig, repo_root / "configs/ecg/tiny.yaml", [f"data.root={root}",
                                                                       f"data.cache_dir={tmp_path / 'cache'}"])
    data = load_data(cfg)
    y = data.labels_of("val")
    probs = np.random.default_rng(0).uniform(size=y.shape)
    stored = training_card(cfg, data, probs, y)
    card = model_card({"model_card": stored})  # the report's view
    both = [c for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    expected = np.mean([roc_auc_score(y[:, c], probs[:, c]) for c in both])  # independent macro AUROC
    assert abs(card["validation_macro_auroc"] - expected) < 1e-9
    assert card["synthetic"] is True and card["dataset"] == "synth-30"
    assert card["n_train"] == 24 and card["n_validation"] == 3 == len(y)  # folds 1-8 / 9 of 30 round-robin
    assert str(tmp_path) not in str(stored)
    assert "synth-30: 24 cases, synthetic" in format_card(stored)  # medcl info shows the same card
    real = tmp_path / "real-layout"
    shutil.copytree(root, real)
    (real / TRUTH_FILE).unlink()
    cfg.data.root = str(real)
    card = model_card({"model_card": training_card(cfg, data, probs, y)})
    assert card["synthetic"] is False and "PTB-XL-layout folder 'real-layout'" in card["training_data"]
