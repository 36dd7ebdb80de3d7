"""``medcl ecg predict`` is inference: a real run must not import Lightning, the losses or the trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]

_RUN = """
import json, sys
from medcl.cli import main
rc = main(sys.argv[1:])
heavy = [m for m in ('lightning', 'lightning.pytorch', 'medcl.losses.prototype', 'medcl.pipelines.ecg_train',
                     'medcl.engine.trainer', 'medcl.engine.module') if m in sys.modules]
print(json.dumps({'rc': rc, 'heavy': heavy}))
"""


def test_ecg_predict_runs_without_lightning(tmp_path):
    from medcl.config import load_config
    from medcl.data.ptbxl import PTBXL
    from medcl.data.synthetic.ecg import write_dataset
    from medcl.pipelines.ecg_config import ECGConfig
    from medcl.pipelines.ecg_model import build_net, label_groups, save_model

    write_dataset(tmp_path / "synth", 3, seed=0)
    records = [str(p) for p in PTBXL(tmp_path / "synth", fs=100).record_paths]
    cfg = load_config(ECGConfig, REPO / "configs/ecg/tiny.yaml", [])
    labels = PTBXL(tmp_path / "synth", fs=100).labels
    torch.manual_seed(0)
    net = build_net(cfg, label_groups(labels), len(labels))
    ckpt = save_model(tmp_path / "model.ckpt", net, cfg, labels, {"head": "fusion", "thresholds": [0.5] * len(labels)})
    proc = subprocess.run([sys.executable, "-c", _RUN, "ecg", "predict", *records, "--checkpoint", str(ckpt),
                           "--out", str(tmp_path / "pred")], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stderr[-2000:]
    assert result["heavy"] == []
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert [r["record"] for r in predictions["records"]] == [Path(r).name for r in records]  # never absolute
