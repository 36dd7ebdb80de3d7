"""The anchor a user would pick instead of ProtoECGNet: a plain 1D ResNet over the 12 leads.

Same backbone as ProtoECGNet's rhythm branch (MONAI 1D ResNet, dropout after the third stage,
optional per-record z-scoring), global average pooling and one linear layer to all labels; BCE
with the same positive weights; Adam + weight decay + cosine schedule; the epoch with the best
validation macro AUROC is kept. No prototypes, no projection.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medcl.engine import (
    MedclModule,
    build_trainer,
    checkpoint_path,
    fit,
    load_model_checkpoint,
    load_state_into,
)
from medcl.losses.prototype import positive_weights
from medcl.metrics.auroc import auroc
from medcl.nets.protoecg import add_stage_dropout, resnet_backbone, zscore_leads

__all__ = ["ResNet1DClassifier", "train_baseline"]


class ResNet1DClassifier(nn.Module):
    """1D ResNet -> global average -> linear logits ``(B, num_labels)``."""

    def __init__(self, num_labels: int, width: int = 64, layers: tuple[int, ...] = (2, 2, 2, 2),
                 dropout: float = 0.0, normalize: str = "none", leads: int = 12) -> None:
        super().__init__()
        self.backbone = resnet_backbone(1, width, layers, leads)
        add_stage_dropout(self.backbone.layer3, dropout)
        self.head = nn.Linear(8 * width, num_labels)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize == "zscore":
            x = zscore_leads(x)
        return self.head(self.backbone(x))


class _BaselineModule(MedclModule):
    family = "ecg-baseline"

    def __init__(self, net: ResNet1DClassifier, train_y: np.ndarray, lr: float, weight_decay: float,
                 epochs: int, labels: list[str]) -> None:
        super().__init__(net, {"lr": lr, "weight_decay": weight_decay, "epochs": epochs})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ProtoECGNet stages already reported empty classes
            pw = positive_weights(torch.as_tensor(train_y, dtype=torch.float32), names=labels)
        self.register_buffer("pos_weight", pw)
        self.lr, self.weight_decay, self.epochs = lr, weight_decay, epochs
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1].float()
        loss = F.binary_cross_entropy_with_logits(self.net(x), y, pos_weight=self.pos_weight)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._val.append((torch.sigmoid(self.net(batch[0])).float(), batch[1].float()))

    def on_validation_epoch_end(self) -> None:
        probs = torch.cat([p for p, _ in self._val]).cpu().numpy()
        y = torch.cat([t for _, t in self._val]).cpu().numpy()
        self._val.clear()
        aucs = auroc(y, probs)
        self.log("val_auroc", float(np.nanmean(aucs)) if np.isfinite(aucs).any() else 0.5)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def train_baseline(data, cfg, out_dir: Path, epochs: int, lr: float) -> ResNet1DClassifier:
    """Train the baseline on ``data`` (:class:`~medcl.pipelines.ecg_data.ECGData`) with ``cfg``'s
    width, layers, dropout, normalisation, weight decay, batch size and engine settings."""
    from torch.utils.data import DataLoader

    net = ResNet1DClassifier(len(data.labels), cfg.model.width, tuple(cfg.model.layers), cfg.model.dropout,
                             cfg.data.normalize)
    module = _BaselineModule(net, data.labels_of("train"), lr, cfg.optim.weight_decay, epochs, data.labels)
    trainer = build_trainer(cfg.train.model_copy(update={"max_epochs": epochs, "early_stopping_patience": None}),
                            out_dir, monitor="val_auroc", mode="max")
    bs = cfg.data.batch_size
    fit(trainer, module, train_dataloaders=DataLoader(data.dataset("train"), batch_size=bs, shuffle=True),
        val_dataloaders=DataLoader(data.dataset("val"), batch_size=bs))
    best = checkpoint_path(out_dir, "best")
    if best.is_file():
        load_state_into(net, load_model_checkpoint(best, "ecg-baseline"))
    return net.eval()
