"""End-to-end zones training on phantoms through the CLI: learning, co-training, checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference

from medcl.cli import main
from medcl.config import load_config
from medcl.data.datalist import read_datalist
from medcl.data.synthetic.prostate import write_dataset
from medcl.data.zones_labels import LABEL_MAP
from medcl.engine import load_model_checkpoint, load_state_into
from medcl.nets.dualpath import build_zones_net
from medcl.pipelines.zones import ZonesConfig, _stages
from medcl.transforms.zones import zones_val_transforms

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "zones" / "synthetic.yaml"
FAST = [
    "train.max_epochs=12",
    "train.check_val_every_n_epoch=6",
    "train.progress_bar=false",
    "train.log_every_n_steps=50",
    "data.synthetic_cases=6",
    "data.synthetic_unlabeled=2",
    "stage2.epochs=2",
    "stage2.consistency_weight=20",
    "stage2.rampup_epochs=0.5",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the autouse fixture
    out = tmp_path_factory.mktemp("zones_run")
    try:
        assert main(["zones", "train", "--config", str(CONFIG), "--out", str(out), *FAST]) == 0
    finally:
        torch.set_num_threads(previous)
    return out


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> list[tuple[torch.Tensor, np.ndarray]]:
    """Three phantoms from an unseen seed, preprocessed like validation (1 x 1 x 3 mm)."""
    path = write_dataset(tmp_path_factory.mktemp("heldout"), n=3, seed=987, n_validation=0)
    transform = zones_val_transforms(pixdim=[1.0, 1.0, 3.0])
    cases = [transform(item) for item in read_datalist(path, "training", ("image", "label"))]
    return [(c["image"][None], c["label"][0].numpy().astype(int)) for c in cases]


def _net(checkpoint: Path) -> torch.nn.Module:
    ckpt = load_model_checkpoint(checkpoint, "zones")
    return load_state_into(build_zones_net(ckpt.config["model"]), ckpt).eval()


def _evaluate(net: torch.nn.Module, cases, patch=(32, 32, 8)) -> tuple[np.ndarray, float]:
    """Plain per-zone Dice (mean over cases) and the mean path disagreement."""
    dice, disagreement = [], []
    with torch.no_grad():
        for image, label in cases:
            probs, unc = sliding_window_inference(image, patch, 4, net.zone_probabilities, overlap=0.25)
            pred = probs.argmax(1)[0].numpy()
            inter = np.array([((pred == z) & (label == z)).sum() for z in range(1, 5)])
            total = np.array([(pred == z).sum() + (label == z).sum() for z in range(1, 5)])
            dice.append(2 * inter / np.maximum(total, 1))
            disagreement.append(float(unc.mean()))
    return np.mean(dice, axis=0), float(np.mean(disagreement))


def test_training_beats_untrained_on_heldout_phantoms(run: Path, heldout) -> None:
    cfg = load_config(ZonesConfig, CONFIG)
    torch.manual_seed(0)
    untrained = build_zones_net(cfg.model).eval()
    dice_untrained, _ = _evaluate(untrained, heldout)
    dice_trained, _ = _evaluate(_net(run / "checkpoints" / "stage1" / "best.ckpt"), heldout)
    # PZ and TZ are learnt in a few epochs; the mean over all four zones clearly improves
    assert dice_trained[:2].min() > 0.4, dice_trained
    assert dice_trained.mean() > dice_untrained.mean() + 0.2, (dice_trained, dice_untrained)


def test_stage2_lowers_path_disagreement(run: Path, heldout) -> None:
    _, before = _evaluate(_net(run / "checkpoints" / "stage1" / "best.ckpt"), heldout)
    _, after = _evaluate(_net(run / "checkpoints" / "stage2" / "last.ckpt"), heldout)
    assert after < before, (before, after)


def test_checkpoints_carry_label_map_stage_and_validation_dice(run: Path) -> None:
    for stage in (1, 2):
        ckpt = load_model_checkpoint(run / "checkpoints" / f"stage{stage}" / "best.ckpt", "zones")
        assert ckpt.label_map == LABEL_MAP and ckpt.extra["stage"] == stage
        assert ckpt.config["model"]["arch"] == "dualpath"
        card = ckpt.extra["model_card"]
        assert card["synthetic_only"] and card["n_training_cases"] == 7  # 5 labelled + 2 unlabeled
        assert card["training_data"][0] == {"name": "medcl prostate phantoms", "cases": 5,
                                            "annotated": ["AFS", "DPU", "PZ", "TZ"], "synthetic": True}
        assert 0.0 <= card["validation"]["val/dice_mean"] <= 1.0
    rows = list(csv.DictReader((run / "logs" / "stage1" / "version_0" / "metrics.csv").open()))
    dice = [float(r["val/dice_mean"]) for r in rows if r.get("val/dice_mean")]
    assert len(dice) == 2 and max(dice) > 0.3  # validated every 6 of 12 epochs
    assert (run / "config.yaml").is_file() and (run / "phantoms" / "dataset.json").is_file()


def test_resume_skips_finished_stages(run: Path) -> None:
    cfg = load_config(ZonesConfig, CONFIG)
    assert _stages(cfg, "both", None) == [1, 2]
    assert _stages(cfg, "both", run / "checkpoints" / "stage2" / "last.ckpt") == [2]
    assert _stages(
        cfg.model_copy(update={"model": cfg.model.model_copy(update={"arch": "baseline"})}), "both", None
    ) == [1]


def test_cli_reports_bad_config_values(tmp_path, capsys) -> None:
    code = main(
        ["zones", "train", "--config", str(CONFIG), "--out", str(tmp_path), "data.patch_size=[30,32,8]"]
    )
    assert code == 2
    assert "patch_size" in capsys.readouterr().err
    code = main(["zones", "train", "--out", str(tmp_path), "data.synthetic_cases=0"])
    assert code == 2
    assert "data.datalist" in capsys.readouterr().err
