"""SepCLR training: the Lightning module and the fit on MONAI data dicts (Louiset et al., ICLR 2024).

Kept apart from :mod:`medcl.pipelines.sepclr` so that ``embed``/``evaluate``/``explain`` import no
Lightning and no losses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medcl.config import dump_config
from medcl.engine import MedclModule
from medcl.errors import MedclError
from medcl.pipelines.sepclr import (
    LABEL_MAP,
    SepCLRConfig,
    _encoders,
    _transforms,
    build_net,
    records_from_manifest,
)

__all__ = ["SepCLRModule", "fit_records", "train"]


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Half/bf16 autocast outputs in float32 for the loss; float32/float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class SepCLRModule(MedclModule):
    """Lightning module training SepCLR (or the SimCLR baseline) on two augmented views."""

    family = "sepclr"

    def __init__(self, cfg: SepCLRConfig) -> None:
        from medcl.transforms.batch_augment import build_augment

        super().__init__(build_net(cfg), cfg.model_dump(mode="json"), dict(LABEL_MAP))
        self.cfg = cfg
        self.augment = build_augment(cfg.augment, cfg.data.spatial_size, cfg.model.in_channels)
        # 2D convolutions run ~10% faster channels-last on CPU (oneDNN) and on GPU tensor cores
        self.memory_format = torch.channels_last if cfg.data.spatial_dims == 2 else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)
        if cfg.baseline == "simclr":
            from monai.losses import ContrastiveLoss

            self.criterion = ContrastiveLoss(temperature=cfg.loss.simclr_temperature)
        else:
            from medcl.losses.sepclr import SepCLRLoss

            beta_s, beta_reg, lam = cfg.loss.weights()
            self.criterion = SepCLRLoss(beta_s, beta_reg, lam, gather=cfg.loss.gather)

    def _simclr_step(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        from medcl.engine.distributed import gather_with_grad

        z1, z2 = self.net(v1)[1], self.net(v2)[1]
        if self.cfg.loss.gather:
            z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        loss = self.criterion(z1.float(), z2.float())
        self.log("train/loss", loss, prog_bar=True, batch_size=v1.shape[0])
        return loss

    @torch.no_grad()
    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented views of a batch, made on its device in float32 (batched ops)."""
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            v1, v2 = self.augment(x), self.augment(x)
        return v1.contiguous(memory_format=self.memory_format), v2.contiguous(memory_format=self.memory_format)

    def loss_terms(self, v1: torch.Tensor, v2: torch.Tensor, group: torch.Tensor):
        """SepCLR terms of two views: both views through both encoders and heads, then the loss (no host sync)."""
        o1, o2 = self.net(v1), self.net(v2)
        return self.criterion.terms(*map(_at_least_float32, (o1.zc, o2.zc, o1.zs, o2.zs)), group)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        v1, v2 = self.views(batch["image"])
        if self.cfg.baseline == "simclr":
            return self._simclr_step(v1, v2)
        terms = self.loss_terms(v1, v2, batch["group"])
        self.log_dict({f"train/{k}": v for k, v in terms.as_dict().items()}, prog_bar=False, batch_size=v1.shape[0])
        return terms.total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.cfg.optim.lr, weight_decay=self.cfg.optim.weight_decay)


def _train_loader(cfg: SepCLRConfig, records: list[dict[str, Any]], load: bool) -> torch.utils.data.DataLoader:
    from monai.data import CacheDataset, DataLoader

    from medcl.data.samplers import GroupBalancedBatchSampler, NaturalBatchSampler

    transform = _transforms(cfg, augment=True, load=load)
    ds = CacheDataset(records, transform=transform, cache_rate=cfg.data.cache_rate, num_workers=0, progress=False)
    kind = GroupBalancedBatchSampler if cfg.data.sampler == "balanced" else NaturalBatchSampler
    try:
        sampler = kind([r["group"] for r in records], cfg.data.batch_size, seed=cfg.train.seed)
    except ValueError as exc:
        raise MedclError(f"data.sampler={cfg.data.sampler}: {exc}") from None
    return DataLoader(ds, batch_sampler=sampler, num_workers=cfg.train.num_workers)


def fit_records(
    cfg: SepCLRConfig,
    records: list[dict[str, Any]],
    out_dir: str | os.PathLike,
    resume: str | os.PathLike | None = None,
    load: bool = True,
) -> Path:
    """Train on MONAI data dicts (``image`` = path, or a channel-first array when ``load=False``)."""
    from medcl.engine import build_trainer, checkpoint_path, fit, publish_model, seed_everything
    from medcl.utils import write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", dump_config(cfg))
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    loader = _train_loader(cfg, records, load)
    module = SepCLRModule(cfg)
    if cfg.model.init != "random" and resume is None:
        from medcl.nets.init import load_imagenet_resnet

        for encoder in _encoders(module.net):
            load_imagenet_resnet(encoder, cfg.model.init)
    from medcl.engine.callbacks import TransformRNGCallback

    trainer = build_trainer(cfg.train, out, use_distributed_sampler=False,
                            extra_callbacks=[TransformRNGCallback(loader)])  # exact resume
    fit(trainer, module, resume=resume, train_dataloaders=loader)
    return publish_model(checkpoint_path(out, "last"), out)


def train(cfg: SepCLRConfig, out_dir: str | os.PathLike, resume: str | os.PathLike | None = None) -> Path:
    """Validate the manifest, train through the shared engine, return ``<out>/model.ckpt`` (the last epoch's).

    Rows whose ``split`` is ``test`` are held out (kept for probing).
    """
    from medcl.data.manifest import read_manifest

    manifest = read_manifest(cfg.data.manifest)
    if manifest.split is not None:
        manifest = manifest.subset(manifest.split != "test")
        if len(set(manifest.groups.tolist())) < 2:
            raise MedclError(f"{cfg.data.manifest}: the rows not in split 'test' hold a single group; need both")
    return fit_records(cfg, records_from_manifest(manifest), out_dir, resume)
