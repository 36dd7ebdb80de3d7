"""Shared training engine on Lightning: trainer factory, checkpoints, seeding, distributed helpers.

Names are resolved lazily (PEP 562) so that inference code importing, say,
:func:`load_model_checkpoint` or :func:`pick_device` does not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CheckpointData": "medcl.engine.checkpoint",
    "MedclModule": "medcl.engine.module",
    "load_model_checkpoint": "medcl.engine.checkpoint",
    "load_state_into": "medcl.engine.checkpoint",
    "default_precision": "medcl.engine.device",
    "pick_device": "medcl.engine.device",
    "autocast_dtype": "medcl.engine.device",
    "seed_everything": "medcl.engine.seed",
    "build_trainer": "medcl.engine.trainer",
    "checkpoint_dir": "medcl.engine.checkpoint",
    "checkpoint_path": "medcl.engine.checkpoint",
    "find_model": "medcl.engine.checkpoint",
    "find_stage_model": "medcl.engine.checkpoint",
    "model_file": "medcl.engine.checkpoint",
    "model_payload": "medcl.engine.checkpoint",
    "publish_model": "medcl.engine.checkpoint",
    "save_model_file": "medcl.engine.checkpoint",
    "fit": "medcl.engine.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medcl.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
