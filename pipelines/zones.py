"""Prostate zone training: datalist -> MONAI transforms -> dual-path net -> shared engine (design 2).

Stage 1 trains each path with Dice + CE on its own class set plus the auxiliary gland target;
stage 2 fine-tunes from the best stage-1 weights adding the ramped consistency between the paths
on their shared classes, with unlabeled scans (datalist list ``unlabeled``) taking part (design
section 2; consistency ramp of Laine & Aila 2017). Each stage is one Lightning run with
``out_dir/checkpoints/stage{1,2}/`` whose ``best.ckpt`` is chosen by the mean validation Dice over the annotated
zones; the final stage's lands in ``out_dir/model.ckpt``. Python API: :class:`ZonesConfig`, :func:`train`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice
from monai.networks.utils import one_hot
from pydantic import Field, model_validator

from medcl.config import (
    MedclModel,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    TrainConfig,
    dump_config,
    section_from_dataclass,
)
from medcl.data.zones_labels import LABEL_MAP, NUM_ZONES, ZONE_NAMES, annotated_mask, observed_prediction
from medcl.engine import MedclModule
from medcl.errors import MedclError
from medcl.losses.cotraining import PathConsistencyLoss, ZonesSupervisedLoss, sigmoid_rampup
from medcl.nets.dualpath import ZonesNetSpec, build_zones_net, fuse_paths, shared_disagreement

__all__ = ["ZonesConfig", "ZonesModule", "build_loaders", "train"]

Stage = Literal["1", "2", "both"]


# ----------------------------------------------------------------------------------------- config
class ZonesDataConfig(MedclModel):
    """Inputs, geometry, patch sampling and caching."""

    datalist: str | None = Field(None, description="MSD-style datalist JSON (training/validation/unlabeled).")
    synthetic_cases: int = Field(0, ge=0, description="Without a datalist: labelled phantoms to generate.")
    synthetic_unlabeled: int = Field(
        0, ge=0, description="Without a datalist: unlabeled phantoms to generate."
    )
    label_remap: str | dict[int, int] = Field(
        "identity", description="'identity', 'msd' or {source: zone}; an item's own zone_remap wins."
    )
    channel: NonNegativeInt | list[NonNegativeInt] | None = Field(
        None,
        description="Channel of 4D images (MSD Task05: 0 T2, 1 ADC), or a list read as input channels "
        "(model.in_channels must match); an item's own channel wins.",
    )
    pixdim: list[PositiveFloat] = Field(default_factory=lambda: [0.5, 0.5, 3.0], min_length=3, max_length=3)
    patch_size: list[PositiveInt] = Field(default_factory=lambda: [64, 64, 8], min_length=3, max_length=3)
    samples_per_volume: int = Field(2, ge=1, description="Patches drawn from each volume per visit.")
    pos: float = Field(2.0, ge=0, description="RandCropByPosNegLabeld weight of gland-centred patches.")
    neg: float = Field(1.0, ge=0, description="RandCropByPosNegLabeld weight of background-centred patches.")
    neg_margin_mm: float | None = Field(
        None, gt=0, description="Centre background patches within this distance (mm) of the gland (hard "
        "negatives: rectum, seminal vesicles); None: anywhere in the volume."
    )
    batch_size: int = Field(2, ge=1, description="Volumes per batch (x samples_per_volume patches).")
    repeats: int = Field(
        1, ge=1, description="Visits of each training case per epoch (few-shot runs: longer epochs, one cache)."
    )
    cache: Literal["memory", "disk", "none"] = Field(
        "memory", description="CacheDataset / PersistentDataset."
    )
    val_sw_batch_size: int = Field(4, ge=1)
    val_overlap: float = Field(0.25, ge=0.0, lt=1.0)


class ZonesAugmentConfig(MedclModel):
    """Training augmentation (in-plane rotation/scaling, translation, LR flip, intensity)."""

    rotate_deg: float = Field(10.0, ge=0)
    scale: float = Field(0.1, ge=0, lt=1)
    translate_vox: list[float] = Field(default_factory=lambda: [4.0, 4.0, 0.0], min_length=3, max_length=3)
    flip_lr: bool = True
    intensity: bool = True


ZonesModelConfig = section_from_dataclass(
    ZonesNetSpec, "ZonesModelConfig", "Network settings (fields and checks of :class:`medcl.nets.dualpath.ZonesNetSpec`).",
    __name__,
)


class ZonesLossConfig(MedclModel):
    """Stage-1 loss weights."""

    lambda_aux: float = Field(0.5, ge=0)
    lambda_dice: float = Field(1.0, ge=0)
    lambda_ce: float = Field(1.0, ge=0)


class ZonesOptimConfig(MedclModel):
    """AdamW settings of stage 1."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["constant", "onecycle"] = Field(
        "constant", description="'onecycle': warm-up to lr then cosine decay over the run, per step."
    )
    warmup_fraction: float = Field(0.1, gt=0, lt=1, description="Warm-up share of the one-cycle schedule.")


class ZonesStage2Config(MedclModel):
    """Co-training fine-tune (dual path only)."""

    epochs: int = Field(5, ge=0, description="Stage-2 epochs (0: no stage 2).")
    lr: float = Field(3e-4, gt=0)
    consistency_weight: float = Field(1.0, ge=0)
    rampup_epochs: float = Field(2.0, ge=0, description="Sigmoid ramp length of the consistency weight.")
    use_unlabeled: bool = Field(
        True, description="Add the datalist's 'unlabeled' scans to the consistency term."
    )
    init_checkpoint: str | None = Field(
        None, description="Stage-1 checkpoint (default: out_dir/checkpoints/stage1 best)."
    )


class ZonesConfig(MedclModel):
    """Prostate zone training config (``configs/zones/*.yaml``)."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    data: ZonesDataConfig = Field(default_factory=ZonesDataConfig)
    augment: ZonesAugmentConfig = Field(default_factory=ZonesAugmentConfig)
    model: ZonesModelConfig = Field(default_factory=ZonesModelConfig)
    loss: ZonesLossConfig = Field(default_factory=ZonesLossConfig)
    optim: ZonesOptimConfig = Field(default_factory=ZonesOptimConfig)
    stage2: ZonesStage2Config = Field(default_factory=ZonesStage2Config)

    @model_validator(mode="after")
    def _check_channels(self) -> ZonesConfig:
        channels = self.data.channel if isinstance(self.data.channel, list) else [self.data.channel]
        if any(c is not None and c < 0 for c in channels):
            raise ValueError(f"data.channel {self.data.channel}: channel indices must be >= 0")
        if isinstance(self.data.channel, list) and len(self.data.channel) != self.model.in_channels:
            raise ValueError(f"data.channel {self.data.channel} reads {len(self.data.channel)} channels but "
                             f"model.in_channels is {self.model.in_channels}")
        return self

    @model_validator(mode="after")
    def _check_patch(self) -> ZonesConfig:
        divisor = ZonesNetSpec(**self.model.model_dump()).divisor
        if any(p % d for p, d in zip(self.data.patch_size, divisor)):
            raise ValueError(
                f"data.patch_size {self.data.patch_size} must be divisible by {divisor} (model strides)"
            )
        return self


# ----------------------------------------------------------------------------------------- module
class ZonesModule(MedclModule):
    """Lightning module of both stages; the exported ``net`` is a zones network.

    Args:
        cfg: the resolved config.
        stage: 1 (supervised) or 2 (supervised + ramped path consistency).
    """

    family = "zones"

    def __init__(self, cfg: ZonesConfig, stage: int = 1) -> None:
        super().__init__(build_zones_net(cfg.model), cfg.model_dump(mode="json"), dict(LABEL_MAP))
        self.cfg, self.stage = cfg, stage
        self.medcl_extra = {"stage": stage}
        self.supervised = ZonesSupervisedLoss(cfg.model.aux, **cfg.loss.model_dump())
        self.consistency = PathConsistencyLoss()
        self._dice: list[torch.Tensor] = []
        self._disagreement: list[torch.Tensor] = []

    @property
    def dual(self) -> bool:
        return self.cfg.model.arch == "dualpath"

    def consistency_weight(self, batch_idx: int) -> float:
        """Ramped stage-2 weight at the current (fractional) epoch; 0 in stage 1."""
        if self.stage != 2 or not self.dual:
            return 0.0
        progress = self.current_epoch + batch_idx / max(1, int(self.trainer.num_training_batches))
        return self.cfg.stage2.consistency_weight * sigmoid_rampup(progress, self.cfg.stage2.rampup_epochs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        labeled, unlabeled = (
            (batch["labeled"], batch.get("unlabeled")) if "labeled" in batch else (batch, None)
        )
        x = labeled["image"]
        n = x.shape[0]
        if unlabeled is not None:
            x = torch.cat([x, unlabeled["image"]])  # one forward pass over both kinds of patches
        out = self.net(x)
        terms = self.supervised.terms(
            {k: v[:n] for k, v in out.items()}, labeled["label"], labeled.get("aux"), labeled.get("annotated")
        )
        loss = self.supervised.total(terms)
        weight = self.consistency_weight(batch_idx)
        if weight > 0:
            cons = self.consistency(out["a"], out["b"])
            loss = loss + weight * cons
            self.log("train/consistency", cons, batch_size=x.shape[0])
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def _predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(x)
        if not self.dual:
            return {"probs": out["fused"].float().softmax(1)}
        prob_a, prob_b = self.net.path_probabilities(out)
        return {
            "probs": fuse_paths(prob_a, prob_b),
            "disagreement": shared_disagreement(prob_a, prob_b).abs(),
        }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        pred = sliding_window_inference(
            batch["image"],
            roi_size=self.cfg.data.patch_size,
            sw_batch_size=self.cfg.data.val_sw_batch_size,
            predictor=self._predict,
            overlap=self.cfg.data.val_overlap,
            mode="gaussian",
        )
        labels = pred["probs"].argmax(1, keepdim=True)
        self._dice.append(annotated_dice(labels, batch["label"], batch.get("annotated")))
        if "disagreement" in pred:
            self._disagreement.append(pred["disagreement"].mean())

    def on_validation_epoch_end(self) -> None:
        scores = torch.cat(self._dice).nanmean(0) if self._dice else torch.full((NUM_ZONES - 1,), float("nan"))
        self._dice.clear()
        metrics = {f"val/dice_{name}": scores[i] for i, name in enumerate(ZONE_NAMES[1:])}
        # mean over the zones the validation cases annotate (unannotated zones are NaN, not 0)
        metrics["val/dice_mean"] = torch.nan_to_num(scores.nanmean(), nan=0.0)
        if self._disagreement:
            metrics["val/disagreement"] = torch.stack(self._disagreement).mean()
            self._disagreement.clear()
        self.log_dict(metrics, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Stamp the latest validation metrics into the model card, then write the ``medcl`` entry."""
        card = self.medcl_extra.get("model_card")
        if card is not None and self._trainer is not None:
            card["validation"] = {  # NaN (a zone no validation case annotates) is stored as null
                k: round(float(v), 6) if torch.isfinite(torch.as_tensor(v)) else None
                for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")
            }
        super().on_save_checkpoint(checkpoint)

    def configure_optimizers(self) -> Any:
        """AdamW; with ``optim.schedule: onecycle`` a per-step one-cycle schedule (Smith & Topin 2019)."""
        lr = self.cfg.optim.lr if self.stage == 1 else self.cfg.stage2.lr
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=self.cfg.optim.weight_decay)
        if self.cfg.optim.schedule == "constant":
            return optimizer
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(2, int(self.trainer.estimated_stepping_batches)),
            pct_start=self.cfg.optim.warmup_fraction,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def annotated_dice(pred: torch.Tensor, label: torch.Tensor, annotated: torch.Tensor | None) -> torch.Tensor:
    """Per-case Dice ``(B, 4)`` of the four zones, NaN where a case does not annotate the zone.

    For a partially annotated case the prediction is first drawn as that case's label map would
    draw it (e.g. a predicted DPU counts as TZ when the DPU is not annotated), so a zone the
    reference cannot show neither scores nor penalises. Empty references also give NaN (MONAI
    ``compute_dice`` ``ignore_empty``); the epoch mean is over the non-NaN cases.
    """
    if annotated is not None:
        pred = torch.stack([observed_prediction(p, a) for p, a in zip(pred, annotated.tolist())])
    dice = compute_dice(one_hot(pred.long(), NUM_ZONES), one_hot(label.long(), NUM_ZONES), include_background=False)
    if annotated is not None:
        dice = dice.masked_fill(~annotated.to(dice.device, torch.bool)[:, 1:], float("nan"))
    return dice


# ----------------------------------------------------------------------------------------- data
def with_annotation(items: list[dict], remap: str | dict[int, int]) -> list[dict]:
    """Add ``annotated`` (bool tensor over the five labels) to each item: its ``zones`` list, else
    what its own ``zone_remap`` or the configured remapper can produce (``msd``: PZ and TZ)."""
    return [
        {**{k: v for k, v in item.items() if k != "zones"},
         "annotated": torch.tensor(annotated_mask(item.get("zones"), item.get("zone_remap") or remap))}
        for item in items
    ]


def _dataset(items: list[dict], transform: Any, cfg: ZonesConfig, cache_dir: Path) -> Any:
    """In-memory or on-disk cache of the deterministic prefix; the disk cache is keyed by the chain."""
    from monai.data import Dataset

    from medcl.data.cache import cached_dataset

    if cfg.data.cache == "memory":
        return cached_dataset(items, transform)
    if cfg.data.cache == "disk":
        return cached_dataset(items, transform, cache_root=cache_dir)
    return Dataset(items, transform)


def _train_transform(cfg: ZonesConfig, labeled: bool) -> Any:
    from medcl.transforms.zones import zones_train_transforms

    transform = zones_train_transforms(
        cfg.data.patch_size,
        labeled=labeled,
        remap=cfg.data.label_remap,
        pixdim=cfg.data.pixdim,
        sdm=cfg.model.aux == "sdm",
        num_samples=cfg.data.samples_per_volume,
        pos=cfg.data.pos,
        neg=cfg.data.neg,
        neg_margin_mm=cfg.data.neg_margin_mm,
        channel=cfg.data.channel,
        **cfg.augment.model_dump(),
    )
    transform.set_random_state(seed=cfg.train.seed + (0 if labeled else 1))
    return transform


def build_loaders(
    cfg: ZonesConfig, datalist: str | os.PathLike, stage: int, cache_dir: Path
) -> dict[str, Any]:
    """``{"train": loader or CombinedLoader(labeled, unlabeled), "val": loader or None}``."""
    from lightning.pytorch.utilities import CombinedLoader
    from monai.data import DataLoader
    from torch.utils.data import ConcatDataset

    from medcl.data.datalist import read_datalist
    from medcl.data.layouts import validate_items
    from medcl.transforms.zones import zones_val_transforms

    workers = cfg.train.num_workers
    raw_items = read_datalist(datalist, "training", ("image", "label"))
    validate_items(datalist, "training", raw_items, cfg.data.label_remap, cfg.data.channel)  # before any step
    items = with_annotation(raw_items, cfg.data.label_remap)
    train_ds = _dataset(items, _train_transform(cfg, True), cfg, cache_dir / "train")
    if cfg.data.repeats > 1:  # the same cached dataset visited several times per epoch
        train_ds = ConcatDataset([train_ds] * cfg.data.repeats)
    train = DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, num_workers=workers)
    if stage == 2 and cfg.model.arch == "dualpath" and cfg.stage2.use_unlabeled:
        unl_items = read_datalist(datalist, "unlabeled", optional=True)
        if unl_items:
            unl_ds = _dataset(unl_items, _train_transform(cfg, False), cfg, cache_dir / "unlabeled")
            unl = DataLoader(unl_ds, batch_size=cfg.data.batch_size, shuffle=True, num_workers=workers)
            train = CombinedLoader({"labeled": train, "unlabeled": unl}, mode="max_size_cycle")
    raw_val = read_datalist(datalist, "validation", ("image", "label"), optional=True)
    validate_items(datalist, "validation", raw_val, cfg.data.label_remap, cfg.data.channel)
    val_items = with_annotation(raw_val, cfg.data.label_remap)
    val = None
    if val_items:
        val_ds = _dataset(
            val_items, zones_val_transforms(cfg.data.label_remap, cfg.data.pixdim, cfg.data.channel), cfg, cache_dir / "val"
        )
        val = DataLoader(val_ds, batch_size=1, num_workers=workers)
    return {"train": train, "val": val}


INTENDED_USE = (
    "research: segmentation of the prostate zones (PZ, TZ, DPU, AFS) on T2-weighted prostate MRI, with "
    "zone volumes and a PI-RADS v2.1 sector map; not a medical device and not for clinical decisions"
)


def training_card(cfg: ZonesConfig, datalist: str | os.PathLike) -> dict[str, Any]:
    """Model card of a run: the datalist's data sets (name, cases, annotated zones, synthetic or real)."""
    import json

    from medcl.data.datalist import read_datalist
    from medcl.engine.model_card import dataset_summary, model_card

    doc = json.loads(Path(datalist).read_text())
    name, synthetic = str(doc.get("name") or Path(datalist).stem), bool(doc.get("synthetic", False))

    def zones(item: dict) -> list[str]:
        mask = annotated_mask(item.get("zones"), item.get("zone_remap") or cfg.data.label_remap)
        return [ZONE_NAMES[i] for i, on in enumerate(mask) if on and i > 0]

    items = read_datalist(datalist, "training", ("image", "label"))
    data = dataset_summary(items, name, synthetic, zones)
    unlabeled = read_datalist(datalist, "unlabeled", optional=True)
    data += [{**d, "name": f"{d['name']} (unlabeled)"} for d in dataset_summary(unlabeled, name, synthetic)]
    seen = {z for d in data for z in d["annotated"]}
    missing = [z for z in ZONE_NAMES[1:] if z not in seen]
    limits = f"zones never annotated in the training data: {', '.join(missing)}" if missing else ""
    card = model_card("zones", data, INTENDED_USE, limitations=limits)
    card["n_validation_cases"] = len(read_datalist(datalist, "validation", ("image", "label"), optional=True))
    return card


def _resolve_datalist(cfg: ZonesConfig, out: Path) -> Path:
    """The configured datalist, or phantoms generated into ``out/phantoms`` (reused when present)."""
    if cfg.data.datalist is not None:
        path = Path(cfg.data.datalist)
        if not path.is_file():
            raise MedclError(f"data.datalist: {path} not found")
        return path
    if cfg.data.synthetic_cases < 2:
        raise MedclError("data.datalist: not set; give a datalist or data.synthetic_cases >= 2 phantoms")
    existing = out / "phantoms" / "dataset.json"
    if existing.is_file():
        return existing
    from medcl.data.synthetic.prostate import write_dataset

    return write_dataset(
        out / "phantoms", cfg.data.synthetic_cases, cfg.train.seed, n_unlabeled=cfg.data.synthetic_unlabeled
    )


# ----------------------------------------------------------------------------------------- train
def _stages(cfg: ZonesConfig, stage: Stage, resume: str | os.PathLike | None) -> list[int]:
    """Stages to run: ``both`` -> [1, 2] (baseline or stage2.epochs=0: [1]); a resume skips done ones."""
    if stage == "2" and cfg.model.arch != "dualpath":
        raise MedclError("model.arch: stage 2 (co-training) needs the dual-path network")
    stages = {"1": [1], "2": [2], "both": [1, 2]}[stage]
    if cfg.model.arch != "dualpath" or cfg.stage2.epochs == 0:
        stages = [s for s in stages if s == 1] or stages
    if resume is not None:
        from medcl.engine import load_model_checkpoint

        done = int(load_model_checkpoint(resume, "zones").extra.get("stage", 1))
        stages = [s for s in stages if s >= done]
    return stages


def _init_from_stage1(module: ZonesModule, cfg: ZonesConfig, out: Path) -> None:
    from medcl.engine import checkpoint_path, load_model_checkpoint, load_state_into

    path = Path(cfg.stage2.init_checkpoint) if cfg.stage2.init_checkpoint else checkpoint_path(out, "best", "stage1")
    if not path.is_file():
        raise MedclError(f"stage2.init_checkpoint: {path} not found; run stage 1 first or set it")
    load_state_into(module.net, load_model_checkpoint(path, "zones"))


def _run_stage(cfg: ZonesConfig, datalist: Path, out: Path, stage: int, resume: Any) -> Path:
    from medcl.engine import build_trainer, checkpoint_path, fit
    from medcl.engine.callbacks import TransformRNGCallback

    module = ZonesModule(cfg, stage)
    if stage == 2:
        _init_from_stage1(module, cfg, out)
    epochs = cfg.train.max_epochs if stage == 1 else cfg.stage2.epochs
    # validate at least once per stage: the engine saves last.ckpt after validation when the
    # validation interval is above one epoch
    val_every = min(cfg.train.check_val_every_n_epoch, epochs)
    train_cfg = cfg.train.model_copy(update={"max_epochs": epochs, "check_val_every_n_epoch": val_every})
    loaders = build_loaders(cfg, datalist, stage, out / "cache")
    module.medcl_extra["model_card"] = training_card(cfg, datalist)
    monitor = "val/dice_mean" if loaders["val"] is not None else None
    trainer = build_trainer(train_cfg, out, monitor=monitor, mode="max", stage=f"stage{stage}",
                            extra_callbacks=[TransformRNGCallback(loaders["train"])])  # exact resume
    fit(trainer, module, resume=resume, train_dataloaders=loaders["train"], val_dataloaders=loaders["val"])
    return checkpoint_path(out, "best", f"stage{stage}")


def train(
    cfg: ZonesConfig,
    out_dir: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    stage: Stage = "both",
) -> Path:
    """Train the zones network; return ``<out>/model.ckpt`` (the final stage's best, else last, epoch).

    Args:
        cfg: resolved config.
        out_dir: run folder (``config.yaml``, ``model.ckpt``, ``checkpoints/stage{1,2}/``, logs, phantoms, caches).
        resume: a ``last.ckpt`` of an interrupted stage; its stage is read from the checkpoint.
        stage: ``"1"``, ``"2"`` (from the stage-1 best or ``stage2.init_checkpoint``) or ``"both"``.
    """
    from medcl.engine import publish_model, seed_everything
    from medcl.utils import write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", dump_config(cfg))
    datalist = _resolve_datalist(cfg, out)
    stages = _stages(cfg, stage, resume)
    checkpoint = None
    for i, s in enumerate(stages):
        seed_everything(cfg.train.seed + s, cfg.train.deterministic)
        checkpoint = _run_stage(cfg, datalist, out, s, resume if i == 0 else None)
    return publish_model(checkpoint, out)
