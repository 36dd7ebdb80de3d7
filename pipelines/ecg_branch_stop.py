"""Per-branch early stopping for the joint and classifier stages of ProtoECGNet.

The reference trains each branch as its own run and early-stops it on that branch's validation
AUROC (Sethi et al., 2025). The three branches share no parameters and their losses add up, so
training them together and keeping, per branch, the weights of its best epoch gives the same
result; a branch that has waited ``patience`` epochs without improving is frozen (no more
gradients), and the stage ends when every branch has stopped.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

__all__ = ["BranchEarlyStopping"]


class BranchEarlyStopping(L.Callback):
    """Keep each branch's best weights by ``val_auroc_<branch>``; freeze it after ``patience`` bad epochs.

    Args:
        branches: branch names (``net.branches`` keys).
        patience: epochs without improvement before a branch stops (None: never stops early).
    """

    def __init__(self, branches: tuple[str, ...], patience: int | None) -> None:
        self.branches = tuple(branches)
        self.patience = patience
        self.best: dict[str, float] = {}
        self.wait: dict[str, int] = {b: 0 for b in self.branches}
        self.best_epoch: dict[str, int] = {}
        self.stopped: dict[str, bool] = {b: False for b in self.branches}
        self.snapshots: dict[str, dict[str, torch.Tensor]] = {}

    def _freeze(self, module: L.LightningModule, branch: str) -> None:
        for p in module.net.branches[branch].parameters():
            p.requires_grad_(False)
            p.grad = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        for b in self.branches:
            if self.stopped[b]:
                self._freeze(module, b)

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for b in self.branches:
            value = trainer.callback_metrics.get(f"val_auroc_{b}")
            if value is None or self.stopped[b]:
                continue
            value = float(value)
            if b not in self.best or value > self.best[b]:
                self.best[b], self.wait[b], self.best_epoch[b] = value, 0, trainer.current_epoch
                self.snapshots[b] = {k: v.detach().cpu().clone() for k, v in module.net.branches[b].state_dict().items()}
            else:
                self.wait[b] += 1
                if self.patience is not None and self.wait[b] >= self.patience:
                    self.stopped[b] = True
                    self._freeze(module, b)
        if self.patience is not None and all(self.stopped.values()):
            trainer.should_stop = True

    def restore(self, net: torch.nn.Module) -> None:
        """Load every branch's best weights into ``net`` (branches never validated keep theirs)."""
        for b, state in self.snapshots.items():
            net.branches[b].load_state_dict(state)

    def summary(self) -> dict[str, Any]:
        return {b: {"best_val_auroc": self.best.get(b), "best_epoch": self.best_epoch.get(b),
                    "stopped_early": self.stopped[b]} for b in self.branches}

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "best_epoch": self.best_epoch, "stopped": self.stopped,
                "snapshots": self.snapshots}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("best", "wait", "best_epoch", "stopped", "snapshots"):
            getattr(self, key).update(state_dict.get(key, {}))
