"""Trainer factory: one Lightning ``Trainer`` built from :class:`medcl.config.TrainConfig`.

Accelerator auto-detection, DDP for more than one device (also under ``torchrun`` or SLURM, which
Lightning detects from the environment), the precision policy, checkpoints ``last.ckpt`` +
``best.ckpt`` in ``<out>/checkpoints`` (written atomically by Lightning's checkpoint IO), early
stopping, a wall-clock limit, CSV/TensorBoard/MLflow loggers and a progress bar or plain lines.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from medcl.config import TrainConfig
from medcl.engine.callbacks import PlainProgress, RNGStateCallback
from medcl.engine.checkpoint import checkpoint_dir
from medcl.engine.device import default_precision


def _loggers(cfg: TrainConfig, out_dir: Path, stage: str | None = None) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger

    loggers: list[Any] = []
    for name in cfg.loggers:
        if name == "csv":
            loggers.append(CSVLogger(out_dir / "logs", name=stage) if stage else CSVLogger(out_dir, name="logs"))
        elif name == "tensorboard":
            if importlib.util.find_spec("tensorboard") is None:
                warnings.warn("tensorboard is not installed; skipping that logger", stacklevel=2)
                continue
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
        elif name == "mlflow":
            if importlib.util.find_spec("mlflow") is None:
                warnings.warn("mlflow is not installed; skipping that logger", stacklevel=2)
                continue
            from lightning.pytorch.loggers import MLFlowLogger

            loggers.append(MLFlowLogger(tracking_uri=f"file:{out_dir / 'mlruns'}"))
    return loggers


def _strategy(cfg: TrainConfig) -> Any:
    """'auto' lets Lightning choose (DDP for several devices); on CPU DDP uses the gloo backend."""
    if cfg.strategy != "auto":
        return cfg.strategy
    several = cfg.num_nodes > 1 or (isinstance(cfg.devices, int) and cfg.devices > 1)
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several or under_torchrun:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=False)
    return "auto"


def build_trainer(
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    monitor: str | None = None,
    mode: str = "max",
    extra_callbacks: Sequence[L.Callback] = (),
    stage: str | None = None,
    **overrides: Any,
) -> L.Trainer:
    """Build the Lightning trainer every medcl pipeline trains with.

    Args:
        cfg: engine settings.
        out_dir: run folder; checkpoints go to :func:`~medcl.engine.checkpoint.checkpoint_dir`
            (``out_dir/checkpoints[/<stage>]/{last,best}.ckpt``), logs to ``out_dir/logs[/<stage>]``.
        monitor: logged metric that selects ``best.ckpt`` and drives early stopping.
        mode: ``"max"`` or ``"min"`` for ``monitor``.
        extra_callbacks: family callbacks.
        stage: the stage of a multi-stage chain this trainer runs (its own checkpoint and log folders).
        overrides: any other ``lightning.Trainer`` keyword (e.g. ``limit_val_batches``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = checkpoint_dir(out, stage)
    callbacks: list[L.Callback] = [RNGStateCallback()]
    callbacks.append(
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="last",
            every_n_train_steps=cfg.checkpoint_every_n_steps,
            save_on_train_epoch_end=True,  # also when validation runs less often than every epoch
            save_top_k=1 if cfg.checkpoint_every_n_steps is None else -1,
            enable_version_counter=False,
        )
    )
    if monitor is not None:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor=monitor,
                mode=mode,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
        if cfg.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping_patience))
    show_bar = cfg.progress_bar if cfg.progress_bar is not None else sys.stdout.isatty()
    if not show_bar:
        callbacks.append(PlainProgress(cfg.log_every_n_steps))
    callbacks.extend(extra_callbacks)

    kwargs: dict[str, Any] = dict(
        default_root_dir=out,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        max_time=cfg.max_time,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=_strategy(cfg),
        precision=cfg.precision or default_precision(cfg.accelerator),
        deterministic=cfg.deterministic,
        gradient_clip_val=cfg.gradient_clip_val,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        log_every_n_steps=cfg.log_every_n_steps,
        logger=_loggers(cfg, out, stage) or False,
        callbacks=callbacks,
        enable_progress_bar=show_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    kwargs.update(overrides)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    # Lightning's pytree helpers use torch's deprecated ``LeafSpec``/``children_specs`` once per
    # batch (torch >= 2.10); the warning is Lightning's to fix and floods user logs.
    warnings.filterwarnings("ignore", message=r".*(LeafSpec|treespec\.children_specs).*", category=FutureWarning)
    return L.Trainer(**kwargs)


def fit(trainer: L.Trainer, module: L.LightningModule, *, resume: str | os.PathLike | None = None, **data: Any) -> None:
    """``trainer.fit`` with a safe resume: the checkpoint is loaded with ``weights_only=True``."""

    if resume is not None:
        from medcl.io.checkpoint_file import check_resume_checkpoint

        check_resume_checkpoint(resume)  # refused here, never by Lightning's advice to disable the protection
    trainer.fit(module, ckpt_path=str(resume) if resume is not None else None, weights_only=True, **data)
