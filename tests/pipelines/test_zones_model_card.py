"""Model cards: training data provenance in checkpoints, ``medcl info CKPT``, synthetic-only stamps."""

from __future__ import annotations

import csv
import json

import numpy as np
import torch
from matplotlib.image import imread
from test_zones_segment import IntensityOracle, write_phantom

from medcl.cli import main
from medcl.engine.model_card import SYNTHETIC_ONLY, dataset_summary, model_card, synthetic_warning
from medcl.pipelines.zones_segment import ZonesSegmenter, segment


def _card(synthetic_real: tuple[bool, ...]) -> dict:
    items = [{"dataset": "phantoms" if s else "prostate158", "synthetic": s, "zones": ["PZ", "TZ"]}
             for s in synthetic_real]
    return model_card("zones", dataset_summary(items, "x", False, lambda i: i["zones"]), "research")


def test_card_counts_cases_per_data_set_and_flags_synthetic_only():
    mixed = _card((True, True, False))
    assert {d["name"]: d["cases"] for d in mixed["training_data"]} == {"phantoms": 2, "prostate158": 1}
    assert mixed["n_training_cases"] == 3 and not mixed["synthetic_only"] and synthetic_warning(mixed) == ""
    only = _card((True, True))
    assert only["synthetic_only"] and synthetic_warning(only) == SYNTHETIC_ONLY
    assert only["training_data"][0]["annotated"] == ["PZ", "TZ"]


def _red_pixels_on_top(path) -> int:
    png = imread(path)
    top = png[: png.shape[0] // 10, :, :3]
    return int(((top[..., 0] > 0.8) & (top[..., 1] < 0.3) & (top[..., 2] < 0.3)).sum())


def test_segment_with_a_synthetic_only_model_warns_and_stamps_every_output(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    write_phantom(tmp_path / "in" / "case1.nii.gz")
    for name, card in (("synth", _card((True,))), ("real", _card((False,)))):
        segmenter = ZonesSegmenter(net=IntensityOracle(), tta=False, card=card)
        rows = segment([tmp_path / "in" / "case1.nii.gz"], segmenter, tmp_path / name)
        assert rows[0]["status"] == "ok", rows[0]["error"]
    err = capsys.readouterr().err
    assert err.count(SYNTHETIC_ONLY) == 1  # the synthetic run only
    synth = json.loads((tmp_path / "synth" / "case1_volumes.json").read_text())["model"]
    real = json.loads((tmp_path / "real" / "case1_volumes.json").read_text())["model"]
    assert synth["synthetic_only"] and synth["warning"] == SYNTHETIC_ONLY
    assert not real["synthetic_only"] and real["warning"] == ""
    with open(tmp_path / "synth" / "summary.csv") as handle:
        assert next(csv.DictReader(handle))["model_warning"] == SYNTHETIC_ONLY
    assert _red_pixels_on_top(tmp_path / "synth" / "case1_qc.png") > 50  # the red stamp above the panels
    assert _red_pixels_on_top(tmp_path / "real" / "case1_qc.png") == 0


def test_info_shows_the_card_of_a_checkpoint(tmp_path, capsys, random_zones_checkpoint):
    path = random_zones_checkpoint(tmp_path / "old.ckpt", "baseline")
    assert main(["info", str(path)]) == 0
    assert "model card: none" in capsys.readouterr().out
    raw = torch.load(path, weights_only=True)
    raw["medcl"]["extra"]["model_card"] = {**_card((True, True)), "validation": {"val/dice_PZ": 0.5}}
    torch.save(raw, path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert SYNTHETIC_ONLY in out and "phantoms: 2 cases, synthetic; annotated: PZ, TZ" in out
    assert "val/dice_PZ=0.5" in out
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_card"]["n_training_cases"] == 2
    assert np.isclose(json.loads(json.dumps(raw["medcl"]["extra"]["model_card"]))["validation"]["val/dice_PZ"], 0.5)
