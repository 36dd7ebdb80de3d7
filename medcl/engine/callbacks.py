"""Engine callbacks: RNG state in checkpoints (exact resumes) and plain log lines for non-TTYs."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L

from medcl.engine.seed import rng_state, set_rng_state


class RNGStateCallback(L.Callback):
    """Stores python/numpy/torch RNG states in each checkpoint and restores them on resume.

    With it, a run killed after a checkpoint and resumed draws the same shuffles and augmentations
    as an uninterrupted run (Lightning does not save RNG states itself).
    """

    def state_dict(self) -> dict[str, Any]:
        return rng_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict)


class PlainProgress(L.Callback):
    """Periodic one-line progress for logs and CI (used instead of a bar when stdout is no TTY)."""

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every = max(1, every_n_steps)
        self._t0 = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if trainer.is_global_zero and step % self.every == 0 and step > 0:
            self._print(trainer, f"step {step}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._print(trainer, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done")

    def _print(self, trainer: L.Trainer, head: str) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
        elapsed = time.perf_counter() - self._t0
        print(f"[medcl] {head} ({elapsed:.0f}s) {shown}", file=sys.stdout, flush=True)
