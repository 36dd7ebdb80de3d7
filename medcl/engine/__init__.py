"""Shared training engine on Lightning: trainer factory, checkpoints, seeding, distributed helpers."""

from medcl.engine.checkpoint import CheckpointData, MedclModule, load_model_checkpoint, load_state_into
from medcl.engine.device import default_precision, pick_device
from medcl.engine.seed import seed_everything
from medcl.engine.trainer import build_trainer, checkpoint_path, fit

__all__ = [
    "CheckpointData",
    "MedclModule",
    "build_trainer",
    "checkpoint_path",
    "default_precision",
    "fit",
    "load_model_checkpoint",
    "load_state_into",
    "pick_device",
    "seed_everything",
]
