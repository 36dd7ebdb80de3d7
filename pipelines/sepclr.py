"""SepCLR pipeline: manifest -> MONAI transforms -> two encoders -> shared engine -> outputs.

Louiset, Duchesnay, Grigis, Gori, "Separating common from salient patterns with contrastive
representation learning", ICLR 2024. Python API (used by the CLI, demo and notebooks):
:func:`train`, :func:`embed`, :func:`evaluate`, :func:`explain`. Training (Lightning) lives in
:mod:`medcl.pipelines.sepclr_train`, so embedding and evaluation never load the training stack.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from medcl.config import SEPCLR_PRESETS, MedclModel, PositiveFloat, PositiveInt, TrainConfig
from medcl.errors import MedclError
from medcl.pipelines.sepclr_evaluate import evaluate, evaluate_table
from medcl.transforms.batch_augment import AugmentConfig

__all__ = [
    "SepCLRConfig",
    "build_net",
    "embed",
    "embed_records",
    "embeddings_table",
    "evaluate",
    "evaluate_table",
    "explain",
    "load_net",
    "records_from_manifest",
    "train",
]

LABEL_MAP = {"background": 0, "target": 1}


# ----------------------------------------------------------------------------------------- config
class SepCLRDataConfig(MedclModel):
    """Inputs and preprocessing."""

    manifest: str = Field("manifest.csv", description="CSV with path, group, attributes, optional split.")
    spatial_dims: Literal[2, 3] = 3
    spatial_size: list[PositiveInt] = Field(default_factory=lambda: [48, 48, 48], description="Crop/pad size (voxels).")
    pixdim: list[PositiveFloat] | None = Field(default_factory=lambda: [1.0, 1.0, 1.0], description="3D spacing in mm.")
    intensity: Literal["percentile", "none"] = "percentile"
    batch_size: int = Field(32, ge=2, description="balanced: even, half background and half target per batch.")
    sampler: Literal["balanced", "natural"] = Field(
        "balanced", description="balanced: 50/50 batches (smaller group recycled); natural: shuffled, drop_last."
    )
    cache_rate: float = Field(1.0, ge=0.0, le=1.0, description="Fraction of preprocessed images cached.")

    @model_validator(mode="after")
    def _check_dims(self) -> SepCLRDataConfig:
        if len(self.spatial_size) != self.spatial_dims:
            raise ValueError(f"spatial_size has {len(self.spatial_size)} values; spatial_dims is {self.spatial_dims}")
        if self.batch_size % 2 and self.sampler == "balanced":
            raise ValueError("batch_size must be even with sampler 'balanced' (half background, half target)")
        return self


class SepCLRModelConfig(MedclModel):
    """Encoders (MONAI ResNet) and embedding sizes."""

    common_dim: int = Field(32, ge=1)
    salient_dim: int = Field(32, ge=1)
    depth: Literal[10, 18, 34, 50] = 18
    width: int = Field(64, ge=1, description="Channels of the first ResNet stage.")
    cifar_stem: bool = Field(True, description="3x3 stride-1 first conv, no max-pool (small inputs).")
    in_channels: int = Field(1, ge=1, description="1: grey (RGB files converted by luma); 3: RGB (grey repeated).")
    init: str = Field("random", description="'random', or a local ImageNet ResNet-18 state dict (.pth) for 2D encoders.")


class SepCLRLossConfig(MedclModel):
    """Loss weights: a preset, optionally overridden term by term."""

    preset: Literal["natural", "medical"] = "medical"
    beta_s: float | None = Field(None, ge=0)
    beta_reg: float | None = Field(None, ge=0)
    lam: float | None = Field(None, ge=0)
    gather: bool = Field(True, description="All-gather embeddings across DDP ranks.")
    simclr_temperature: float = Field(0.5, gt=0)

    def weights(self) -> tuple[float, float, float]:
        """``(beta_s, beta_reg, lam)`` after applying the overrides to the preset."""
        base = SEPCLR_PRESETS[self.preset]
        given = (self.beta_s, self.beta_reg, self.lam)
        return tuple(float(b if g is None else g) for b, g in zip(base, given))  # type: ignore[return-value]


class SepCLROptimConfig(MedclModel):
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class SepCLREvalConfig(MedclModel):
    """Embedding, probing and explanation settings."""

    seed: int = 0
    test_fraction: float = Field(0.3, gt=0, lt=1)
    batch_size: int = Field(32, ge=1)
    ig_steps: int = Field(16, ge=2, description="Integrated-Gradients steps.")


class SepCLRConfig(MedclModel):
    """Full SepCLR run configuration (``configs/sepclr/*.yaml``)."""

    baseline: Literal["sepclr", "simclr"] = "sepclr"
    data: SepCLRDataConfig = Field(default_factory=SepCLRDataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: SepCLRModelConfig = Field(default_factory=SepCLRModelConfig)
    loss: SepCLRLossConfig = Field(default_factory=SepCLRLossConfig)
    optim: SepCLROptimConfig = Field(default_factory=SepCLROptimConfig)
    eval: SepCLREvalConfig = Field(default_factory=SepCLREvalConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_init(self) -> SepCLRConfig:
        m = self.model
        if m.init != "random" and (self.data.spatial_dims, m.depth, m.width, m.cifar_stem) != (2, 18, 64, False):
            raise ValueError("model.init loads an ImageNet ResNet-18: needs data.spatial_dims=2, model.depth=18, "
                             "model.width=64, model.cifar_stem=false (standard 7x7 stem; 224 px inputs)")  # fmt: skip
        return self


# ---------------------------------------------------------------------------------------- model
def build_net(cfg: SepCLRConfig) -> torch.nn.Module:
    """The exported network: :class:`SepCLRNet`, or :class:`SimCLRNet` of size ``d_c + d_s``."""
    from medcl.nets.sepclr import SepCLRNet, SimCLRNet

    m = cfg.model
    enc = dict(spatial_dims=cfg.data.spatial_dims, in_channels=m.in_channels, depth=m.depth, width=m.width,
               cifar_stem=m.cifar_stem)  # fmt: skip
    if cfg.baseline == "simclr":
        return SimCLRNet(m.common_dim + m.salient_dim, **enc)
    return SepCLRNet(m.common_dim, m.salient_dim, **enc)


def _encoders(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The ResNet encoder(s) of a :class:`SepCLRNet` (common, salient) or :class:`SimCLRNet`."""
    names = ("common_encoder", "salient_encoder", "encoder")
    return [getattr(net, n) for n in names if hasattr(net, n)]


def load_net(checkpoint: str | os.PathLike) -> tuple[torch.nn.Module, SepCLRConfig]:
    """The trained network (eval mode, CPU) and its config, loaded safely from a medcl checkpoint."""
    from medcl.engine import load_model_checkpoint, load_state_into

    ckpt = load_model_checkpoint(checkpoint, "sepclr")
    cfg = SepCLRConfig.model_validate(ckpt.config)
    return load_state_into(build_net(cfg), ckpt).eval(), cfg


# ----------------------------------------------------------------------------------------- data
def _load_chain(cfg: SepCLRConfig) -> list:
    from medcl.transforms.sepclr import load_transforms

    return load_transforms(cfg.data.spatial_dims, channels=cfg.model.in_channels)


def _preprocess_chain(cfg: SepCLRConfig) -> list:
    from medcl.transforms.sepclr import preprocess_transforms

    d = cfg.data
    return preprocess_transforms(d.spatial_size, d.pixdim if d.spatial_dims == 3 else None, intensity=d.intensity)


def _transforms(cfg: SepCLRConfig, augment: bool, load: bool = True):
    """(Load +) preprocess (+ two-view augmentation) as one MONAI ``Compose``."""
    from medcl.transforms.sepclr import build_transforms

    d = cfg.data
    pixdim = d.pixdim if d.spatial_dims == 3 else None
    return build_transforms(d.spatial_size, pixdim, d.intensity, augment=augment, load=load, channels=cfg.model.in_channels)


def records_from_manifest(manifest) -> list[dict[str, Any]]:
    """MONAI data dicts ``{"image": path, "group": 0|1}`` of a validated manifest."""
    return [{"image": p, "group": int(g)} for p, g in zip(manifest.paths, manifest.groups)]


def train(cfg: SepCLRConfig, out_dir: str | os.PathLike, resume: str | os.PathLike | None = None) -> Path:
    """Validate the manifest and train; see :func:`medcl.pipelines.sepclr_train.train` (loads Lightning)."""
    from medcl.pipelines.sepclr_train import train as _train

    return _train(cfg, out_dir, resume)


# ---------------------------------------------------------------------------------------- embed
def _encode(net: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> dict[str, np.ndarray]:
    """One batch through the encoder(s) and heads (autocast when ``dtype``), float32 arrays by column prefix:
    ``c``, ``s``, ``zc``, ``zs`` (SepCLR) or ``h``, ``z`` (SimCLR)."""
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = net(x)
    named = out._asdict() if hasattr(out, "_asdict") else {"h": out[0], "z": out[1]}
    return {k: v.float().cpu().numpy() for k, v in named.items()}


@torch.no_grad()
def embed_records(
    net: torch.nn.Module, cfg: SepCLRConfig, records: list[dict[str, Any]], load: bool = True
) -> dict[str, np.ndarray]:
    """Encoder outputs ``{"c": (n, d_c), "s": (n, d_s)}`` and head outputs ``zc``, ``zs`` (SepCLR), or
    ``{"h": (n, d), "z": (n, d)}`` (SimCLR)."""
    from monai.data import DataLoader, Dataset

    from medcl.engine.device import autocast_dtype, pick_device
    from medcl.transforms.sepclr import surface_medcl_errors

    ds = Dataset(records, transform=_transforms(cfg, augment=False, load=load))
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, num_workers=0)
    device = pick_device("auto")
    net = net.to(device).eval()
    dtype = autocast_dtype(device)
    parts: dict[str, list[np.ndarray]] = {}
    with surface_medcl_errors():  # a scan that fails to load is reported as its one-line MedclError
        for batch in loader:
            for k, v in _encode(net, batch["image"].to(device), dtype).items():
                parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def embed(checkpoint: str | os.PathLike, manifest: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Encoder outputs of every manifest row -> ``out_dir/embeddings.csv``.

    Columns: ``subject``, ``group``, ``split`` (if given), the attributes, then ``c_*``/``s_*`` and the
    projection-head outputs ``zc_*``/``zs_*`` (SepCLR), or ``h_*``/``z_*`` (SimCLR). Images of any geometry are brought to the training grid by the
    training preprocessing.
    """
    from medcl.data.manifest import read_manifest
    from medcl.utils import atomic_write_path

    man = read_manifest(manifest, require_group=False, require_both=False)
    net, cfg = load_net(checkpoint)
    table = man.table.drop(columns=["path"])
    result = embeddings_table(table, embed_records(net, cfg, records_from_manifest(man)))
    out = Path(out_dir) / "embeddings.csv"
    with atomic_write_path(out) as tmp:
        result.to_csv(tmp, index=False)
    return out


def embeddings_table(table, feats: dict[str, np.ndarray]):
    """``subject`` first, the other manifest columns, then one column per feature (``c_0``, ``s_0``...)."""
    import pandas as pd

    cols = ["subject"] + [c for c in table.columns if c != "subject"] if "subject" in table else list(table.columns)
    blocks = [table[cols].reset_index(drop=True)]
    blocks += [pd.DataFrame(v, columns=[f"{k}_{i}" for i in range(v.shape[1])]) for k, v in feats.items()]
    return pd.concat(blocks, axis=1)


# -------------------------------------------------------------------------------------- explain
def explain(checkpoint: str | os.PathLike, manifest: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Integrated-Gradients maps of ``||s||`` for the target rows, as overlays on each input's grid."""
    from medcl.data.manifest import read_manifest
    from medcl.explain.sepclr_saliency import explain_image

    man = read_manifest(manifest, require_group=False, require_both=False)
    net, cfg = load_net(checkpoint)
    if cfg.baseline != "sepclr":
        raise MedclError(f"{checkpoint}: explain needs a SepCLR checkpoint (this one is {cfg.baseline})")
    rows = man.table if "group" not in man.table else man.table[man.table["group"] == "target"]
    load, pre, out = _load_chain(cfg), _preprocess_chain(cfg), Path(out_dir)
    written = []
    for path, subject in zip(rows["path"], rows["subject"]):
        try:  # one bad scan is reported and skipped; the others finish
            written.append(explain_image(net, path, out / f"{subject}_ig_salient.nii.gz", load, pre, cfg.eval.ig_steps))
        except MedclError as exc:
            print(f"medcl: skipped {path}: {exc}", file=sys.stderr)
    return written
