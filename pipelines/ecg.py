"""ProtoECGNet workflow: PTB-XL -> joint training -> projection -> classifier or fusion -> checkpoint.

Stages (Sethi et al., 2025), each resumable and each leaving ``<out>/checkpoints/<stage>/model.ckpt``
(the run-folder layout of :mod:`medcl.engine.checkpoint`; older ``<out>/<stage>/model.ckpt`` still resume):

- ``joint``: backbones, add-on layers and prototypes of the three branches trained together on
  their own label groups with :class:`~medcl.losses.prototype.PrototypeLoss` (classifiers frozen);
- ``project``: every prototype replaced by its most similar training segment of its own class
  (:mod:`medcl.nets.prototype_projection`); provenance stored in the checkpoint ``extra``;
- ``classifier``: branch classifiers only, BCE + masked L1 (branches frozen);
- ``fusion``: the fusion layer only, BCE over the 71 labels + L1 (branches frozen).

After the last stage, per-class thresholds (max F1 on the validation fold) are stored with the
model. Modules: :mod:`~medcl.pipelines.ecg_config` (configs), :mod:`~medcl.pipelines.ecg_model`
(build/save/load, no Lightning), :mod:`~medcl.pipelines.ecg_data`, :mod:`~medcl.pipelines.ecg_train`
(Lightning), :mod:`~medcl.pipelines.ecg_predict`, :mod:`~medcl.pipelines.ecg_evaluate` and
:mod:`~medcl.pipelines.ecg_report`; ``train``/``evaluate``/``predict`` are re-exported here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from medcl.pipelines.ecg_config import STAGES, ECGConfig

__all__ = ["ECGConfig", "STAGES", "evaluate", "predict", "train"]

log = logging.getLogger(__name__)

def train(
    cfg: ECGConfig,
    out_dir: str | os.PathLike,
    stages: tuple[str, ...] | list[str] = ("joint", "project", "fusion"),
    resume: str | os.PathLike | None = None,
) -> Path:
    """Run ``stages`` in order; return the final model checkpoint (``<out>/model.ckpt``).

    A stage whose ``<out>/checkpoints/<stage>/model.ckpt`` exists is skipped (so a re-run resumes a
    chain); an interrupted training stage resumes from its ``checkpoints/<stage>/last.ckpt`` (or ``resume``).
    A chain that does not start with ``joint`` starts from ``<out>``'s earlier stages or ``resume``.
    """
    from medcl.pipelines.ecg_train import run_stages

    return run_stages(cfg, out_dir, tuple(stages), resume)


def evaluate(checkpoint: str | os.PathLike, data_root: str | os.PathLike, out_dir: str | os.PathLike,
             **kwargs: Any) -> dict:
    """Whole-test-fold AUROC (bootstrap CIs), per branch and fused; see :mod:`medcl.pipelines.ecg_evaluate`."""
    from medcl.pipelines.ecg_evaluate import evaluate as _evaluate

    return _evaluate(checkpoint, data_root, out_dir, **kwargs)


def predict(records: list[str | os.PathLike], checkpoint: str | os.PathLike,
            out_dir: str | os.PathLike | None = None, batch_size: int = 32, engine: str = "torch",
            device: str = "auto", **source: Any) -> dict:
    """Predictions for ECG records (any format; ``source_fs``/``source_leads`` for arrays; ``engine``
    torch or onnxruntime; ``device`` auto, cpu, cuda, cuda:N); see :mod:`medcl.pipelines.ecg_predict`."""
    from medcl.pipelines.ecg_predict import predict as _predict

    return _predict(records, checkpoint, out_dir=out_dir, batch_size=batch_size, engine=engine, device=device,
                    **source)
