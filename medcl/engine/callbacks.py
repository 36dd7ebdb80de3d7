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


def _randomizables(obj: Any, seen: set[int] | None = None) -> list[Any]:
    """Every MONAI ``Randomizable`` reachable from loaders, datasets and transform chains (each once)."""
    from monai.transforms import Randomizable

    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float)):
        return []
    seen.add(id(obj))
    if isinstance(obj, dict):
        return [r for v in obj.values() for r in _randomizables(v, seen)]
    if isinstance(obj, (list, tuple)):
        return [r for v in obj for r in _randomizables(v, seen)]
    found = [obj] if isinstance(obj, Randomizable) else []
    for name in ("flattened", "dataset", "datasets", "transform", "transforms"):  # loader -> dataset -> chain
        if name in getattr(obj, "__dict__", {}) or (name == "flattened" and hasattr(type(obj), "flattened")):
            found += _randomizables(getattr(obj, name), seen)
    if isinstance(obj, Randomizable):  # wrappers hold inner random transforms (e.g. a dict crop's cropper)
        found += [r for v in vars(obj).values() if isinstance(v, Randomizable) for r in _randomizables(v, seen)]
    return found


class TransformRNGCallback(L.Callback):
    """Stores the private RNG of every MONAI random transform of the given loaders in each checkpoint.

    MONAI random transforms draw from their own ``numpy.random.RandomState`` (``set_random_state``), which
    :class:`RNGStateCallback` does not see; in-process loading (``num_workers=0``) keeps that state across
    epochs, so a resumed run must get it back to draw the same augmentations as an uninterrupted one.
    """

    def __init__(self, *loaders: Any) -> None:
        self.transforms = _randomizables(list(loaders))

    def state_dict(self) -> dict[str, Any]:
        import torch

        states = []
        for t in self.transforms:
            kind, keys, pos, has_gauss, cached = t.R.get_state()
            states.append({"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached": float(cached)})
        return {"states": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        states = state_dict.get("states", [])
        if len(states) != len(self.transforms):  # older checkpoint or changed config: keep the seeded states
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"checkpoint holds {len(states)} augmentation RNG states for {len(self.transforms)} "
                           "random transforms: resuming with freshly seeded augmentation (not bit-exact)")
            return
        for t, s in zip(self.transforms, states):
            t.R.set_state(("MT19937", s["keys"].numpy().astype("uint32"), s["pos"], s["has_gauss"], s["cached"]))
