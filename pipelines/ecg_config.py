"""Configuration of the ProtoECGNet workflow (``configs/ecg/*.yaml``) and its stage names.

Light on purpose (pydantic only): inference, the CLI and the config registry import it without
the training stack.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medcl.config import MedclModel, PositiveInt, TrainConfig

__all__ = ["STAGES", "ECGConfig", "ECGDataConfig", "ECGFolds", "ECGLossConfig", "ECGModelConfig",
           "ECGOptimConfig", "ECGProjectConfig"]

STAGES = ("joint", "project", "classifier", "fusion")


class ECGFolds(MedclModel):
    """PTB-XL ``strat_fold`` numbers of each split (the benchmark's 1-8 / 9 / 10 by default)."""

    train: list[int] = Field(default_factory=lambda: list(range(1, 9)), min_length=1)
    val: list[int] = Field(default_factory=lambda: [9], min_length=1)
    test: list[int] = Field(default_factory=lambda: [10], min_length=1)

    @model_validator(mode="after")
    def _disjoint(self) -> ECGFolds:
        seen = [set(self.train), set(self.val), set(self.test)]
        if seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]:
            raise ValueError("train, val and test folds must not overlap")
        return self

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        return {"train": tuple(self.train), "val": tuple(self.val), "test": tuple(self.test)}


class ECGDataConfig(MedclModel):
    """Where the PTB-XL(-shaped) folder is and how records are decoded."""

    root: str = Field("data/ptbxl", description="Folder with ptbxl_database.csv and records100/500.")
    fs: Literal[100, 500] = 100
    n_samples: int | None = Field(None, ge=64, description="Samples per record (default 10 s at fs).")
    highpass: float | None = Field(0.5, ge=0, description="High-pass cut-off in Hz (None: off).")
    cache_dir: str | None = None
    batch_size: int = Field(32, ge=1)
    normalize: Literal["none", "zscore"] = Field(
        "none", description="Per record and lead z-score inside the model (reference: none)."
    )
    folds: ECGFolds = Field(default_factory=ECGFolds)

    @property
    def length(self) -> int:
        """Samples per record the model reads: ``n_samples``, else 10 s at ``fs``."""
        from medcl.data.wfdb_folder import record_length

        return record_length(self.fs, self.n_samples)


class ECGModelConfig(MedclModel):
    """Branch architecture (ResNet-18 branches, 512-d prototypes, 5 / 18 / 7 per class by default)."""

    width: int = Field(64, ge=1, description="Channels of the first ResNet stage (64 = ResNet-18).")
    layers: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=4, max_length=4)
    proto_dim: int = Field(512, ge=1)
    per_class: dict[Literal["rhythm", "morphology", "global"], int] = Field(
        default_factory=lambda: {"rhythm": 5, "morphology": 18, "global": 7}
    )
    partial_length: int = Field(3, ge=1, description="Morphology prototype length in feature steps.")
    pooling: Literal["mean", "max"] = Field("mean", description="Window pooling (reference: mean).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after the third ResNet stage (reference: 0.35).")
    init_2d: str | None = Field(
        None, description="torchvision ResNet-18 state dict (.pth) to start the 2D branches from (conv1 re-created)."
    )


class ECGLossConfig(MedclModel):
    """Loss weights (paper defaults) and options."""

    clustering: float = 0.004
    separation: float = 0.0004
    diversity: float = 250.0
    contrastive: float = 300.0
    sparsity: float = 0.0
    l1: float = 1e-4
    separation_mode: Literal["reference", "protopnet"] = "reference"


class ECGOptimConfig(MedclModel):
    """Adam settings per stage; epochs of the later stages (``train.max_epochs`` is the joint stage's)."""

    lr: float = Field(1e-4, gt=0, description="Joint stage learning rate.")
    head_lr: float = Field(1e-3, gt=0, description="Classifier / fusion stage learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam L2 weight decay (reference: 1.7e-4).")
    head_epochs: int = Field(10, ge=1, description="Epochs of the classifier or fusion stage.")
    scheduler: Literal["none", "cosine"] = Field(
        "none", description="cosine: CosineAnnealingLR with T_max = the stage's epochs (reference)."
    )
    early_stopping: Literal["joint", "per_branch"] = Field(
        "joint", description="joint: one checkpoint by 71-label val AUROC; per_branch: each branch keeps its "
        "best epoch by its own val AUROC and stops after train.early_stopping_patience (reference)."
    )
    compile: bool = Field(
        False, description="joint stage: the network's training forward under torch.compile (CPU inductor or "
        "CUDA); compiles at the first step (minutes on a small CPU) and trains eagerly, with a warning, if it fails."
    )


class ECGProjectConfig(MedclModel):
    """Projection options."""

    batch_size: int = Field(64, ge=1)
    unique: bool = Field(False, description="Distinct source records per branch (not in the reference).")
    candidates: int = Field(16, ge=2, description="Candidates kept per prototype when unique.")


class ECGConfig(MedclModel):
    """Config of ``medcl ecg train`` (see ``configs/ecg/*.yaml``)."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    data: ECGDataConfig = Field(default_factory=ECGDataConfig)
    model: ECGModelConfig = Field(default_factory=ECGModelConfig)
    loss: ECGLossConfig = Field(default_factory=ECGLossConfig)
    optim: ECGOptimConfig = Field(default_factory=ECGOptimConfig)
    project: ECGProjectConfig = Field(default_factory=ECGProjectConfig)
