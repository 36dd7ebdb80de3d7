"""ProtoECGNet training on Lightning: the LightningModule, thresholds and the stage chain.

The model itself (build, save, load) is :mod:`medcl.pipelines.ecg_model`; the data and split
prediction :mod:`medcl.pipelines.ecg_data`; the ``project`` stage :mod:`medcl.pipelines.ecg_projection`;
the run-folder layout :mod:`medcl.engine.checkpoint`.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medcl.engine import (
    MedclModule,
    build_trainer,
    checkpoint_path,
    find_stage_model,
    fit,
    load_model_checkpoint,
    load_state_into,
    model_file,
    pick_device,
)
from medcl.errors import MedclError
from medcl.losses.prototype import MaskedL1Loss, PrototypeLoss, jaccard_matrix, positive_weights
from medcl.metrics.auroc import auroc, best_f1_thresholds
from medcl.nets.protoecg import BRANCHES, ProtoECGNet, adam, channels_last_branch, head_probabilities
from medcl.pipelines.ecg_branch_stop import BranchEarlyStopping
from medcl.pipelines.ecg_config import STAGES, ECGConfig
from medcl.pipelines.ecg_data import ECGData, load_data, loader, predict_split
from medcl.pipelines.ecg_model import build_net, init_2d_branches, load_model, save_model
from medcl.pipelines.ecg_projection import project_prototypes

log = logging.getLogger(__name__)

__all__ = ["ECGModule", "run_stages", "training_card"]


class ECGModule(MedclModule):
    """One training stage (``joint``, ``classifier`` or ``fusion``) of ProtoECGNet.

    Args:
        net: the network (its frozen parts are kept in eval mode).
        cfg: resolved config.
        stage: which stage this module trains.
        labels: the fused label codes.
        train_labels: ``(N, num_labels)`` training labels (positive weights, co-occurrence).
        extra: checkpoint extras carried along (projection provenance, thresholds).
    """

    family = "ecg"

    def __init__(self, net: ProtoECGNet, cfg: ECGConfig, stage: str, labels: list[str],
                 train_labels: np.ndarray, extra: dict[str, Any] | None = None) -> None:
        super().__init__(net, cfg.model_dump(mode="json"), {c: i for i, c in enumerate(labels)})
        if stage not in ("joint", "classifier", "fusion"):
            raise ValueError(f"not a training stage: {stage!r}")
        self.cfg = cfg
        self.stage = stage
        self.labels = labels
        self.medcl_extra = dict(extra or {})
        y = torch.as_tensor(train_labels, dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported once by run_stages
            self._build_losses(y)
        self._freeze()
        for b in BRANCHES:  # oneDNN's fastest layout on CPU; same parameters and state dict
            channels_last_branch(net.branches[b])
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        # the training forward; a tuple so that a compiled wrapper is no submodule (state dict unchanged)
        self._train_net: tuple[Any] = (net,)
        self._compile_pending = cfg.optim.compile and stage == "joint"
        if self._compile_pending:
            self._train_net = (torch.compile(net, dynamic=False),)

    def train_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``net(x)`` of the training step: compiled with ``optim.compile``, falling back to eager
        (same maths) with a warning if the first compiled call fails."""
        if not self._compile_pending:
            return self._train_net[0](x)
        self._compile_pending = False
        try:
            return self._train_net[0](x)
        except Exception as exc:  # no C++ compiler, an unsupported op ...
            first = (str(exc).splitlines() or [""])[0][:200]
            warnings.warn(f"optim.compile: torch.compile failed ({type(exc).__name__}: {first}); training eagerly",
                          stacklevel=2)
            self._train_net = (self.net,)
            return self.net(x)

    def _build_losses(self, y: torch.Tensor) -> None:
        lc = self.cfg.loss
        idx = {b: self.net.label_index(b).cpu() for b in BRANCHES}
        self.branch_losses = nn.ModuleDict({
            b: PrototypeLoss(pos_weight=positive_weights(y[:, idx[b]]), cooccurrence=jaccard_matrix(y[:, idx[b]]),
                             clustering_weight=lc.clustering, separation_weight=lc.separation,
                             diversity_weight=lc.diversity, contrastive_weight=lc.contrastive,
                             sparsity_weight=lc.sparsity, separation_mode=lc.separation_mode)
            for b in BRANCHES
        })
        self.register_buffer("pos_weight_all", positive_weights(y))
        self.l1 = MaskedL1Loss()

    def _trainable(self) -> list[nn.Parameter]:
        net = self.net
        if self.stage == "fusion":
            return list(net.fusion.parameters())
        heads = [p for b in BRANCHES for p in net.branches[b].prototypes.classifier.parameters()]
        if self.stage == "classifier":
            return heads
        head_ids = {id(p) for p in heads} | {id(p) for p in net.fusion.parameters()}
        return [p for p in net.parameters() if id(p) not in head_ids]

    def _freeze(self) -> None:
        keep = {id(p) for p in self._trainable()}
        for p in self.net.parameters():
            p.requires_grad_(id(p) in keep)

    def train(self, mode: bool = True) -> ECGModule:
        super().train(mode)
        if self.stage != "joint":
            self.net.branches.eval()  # frozen backbones keep their BatchNorm statistics
        return self

    def stage_loss(self, out: dict[str, torch.Tensor], y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The stage's loss and its logged terms."""
        net, l1 = self.net, self.cfg.loss.l1
        if self.stage == "fusion":
            bce = F.binary_cross_entropy_with_logits(out["fused"], y, pos_weight=self.pos_weight_all)
            reg = self.l1(net.fusion.weight)
            return bce + l1 * reg, {"bce": bce, "l1": reg}
        terms: dict[str, torch.Tensor] = {}
        total = out["fused"].new_zeros(())
        for b in BRANCHES:
            layer = net.branches[b].prototypes
            yb = y[:, net.label_index(b)]
            logits = out[f"{b}.logits"]
            if self.stage == "joint":
                res = self.branch_losses[b](logits, yb, out[f"{b}.similarities"], layer.prototypes, layer.identity)
                loss = res.pop("loss")
                terms.update({f"{b}.{k}": v for k, v in res.items()})
            else:
                pw = self.branch_losses[b].pos_weight
                loss = F.binary_cross_entropy_with_logits(logits, yb, pos_weight=pw)
                loss = loss + l1 * self.l1(layer.classifier.weight, layer.identity)
            terms[f"{b}.loss"] = loss
            total = total + loss
        return total, terms

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1].float()
        loss, terms = self.stage_loss(self.train_forward(x), y)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x))
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        head = "fusion" if self.stage == "fusion" else "branches"
        self._val.append((head_probabilities(self.net, self.net(x), head), y.double()))  # float64: no ties

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        probs = torch.cat([p for p, _ in self._val])
        y = torch.cat([t for _, t in self._val])
        self._val.clear()
        probs, y = self.all_gather(probs).reshape(-1, probs.shape[-1]), self.all_gather(y).reshape(-1, y.shape[-1])
        aucs = auroc(y.cpu().numpy(), probs.cpu().numpy())
        value = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else 0.5
        self.log("val_auroc", value, prog_bar=True, sync_dist=False)
        if self.stage != "fusion":  # each branch on its own labels (per-branch early stopping)
            for b in BRANCHES:
                sub = aucs[self.net.label_index(b).cpu().numpy()]
                self.log(f"val_auroc_{b}", float(np.nanmean(sub)) if np.isfinite(sub).any() else 0.5, sync_dist=False)

    def stage_epochs(self) -> int:
        return self.cfg.train.max_epochs if self.stage == "joint" else self.cfg.optim.head_epochs

    def configure_optimizers(self):
        o = self.cfg.optim
        lr = o.lr if self.stage == "joint" else o.head_lr
        opt = adam(self._trainable(), lr=lr, weight_decay=o.weight_decay)  # fused kernel, same update
        if o.scheduler == "none":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.stage_epochs())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


# ----------------------------------------------------------------------------------- stage chain


def _fit_stage(stage: str, cfg: ECGConfig, data: ECGData, net: ProtoECGNet, extra: dict[str, Any],
               out: Path, resume: str | os.PathLike | None) -> ProtoECGNet:
    module = ECGModule(net, cfg, stage, data.labels, data.labels_of("train"), extra)
    per_branch = cfg.optim.early_stopping == "per_branch" and stage != "fusion"
    stopper = BranchEarlyStopping(BRANCHES, cfg.train.early_stopping_patience) if per_branch else None
    update: dict[str, Any] = {"max_epochs": module.stage_epochs()}
    if per_branch:
        update["early_stopping_patience"] = None  # the branches stop one by one instead
    trainer = build_trainer(cfg.train.model_copy(update=update), out, monitor="val_auroc", mode="max",
                            extra_callbacks=[stopper] if stopper else [], stage=stage)
    bs, nw = cfg.data.batch_size, cfg.train.num_workers
    last = checkpoint_path(out, "last", stage)  # an interrupted stage (either layout)
    resume = resume if resume is not None else (last if last.is_file() else None)
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # frozen branches, on purpose
    fit(trainer, module, resume=resume, train_dataloaders=loader(data.dataset("train"), bs, nw, shuffle=True),
        val_dataloaders=loader(data.dataset("val"), bs, nw))
    best = checkpoint_path(out, "best", stage)
    if stopper is not None:
        stopper.restore(net)
        extra.setdefault("early_stopping", {})[stage] = stopper.summary()
    elif best.is_file():
        load_state_into(net, load_model_checkpoint(best, "ecg"))
    return net


def _start_point(stages: tuple[str, ...], out: Path, resume: str | os.PathLike | None) -> Path | None:
    """Model checkpoint a chain not starting with ``joint`` continues from."""
    if stages[0] == "joint":
        return None
    if resume is not None:
        return Path(resume)
    earlier = [m for m in (find_stage_model(out, s) for s in STAGES[: STAGES.index(stages[0])]) if m is not None]
    if not earlier:
        raise MedclError(f"{out}: stage '{stages[0]}' needs an earlier stage's model.ckpt (or --resume CKPT)")
    return earlier[-1]


def _check_stages(stages: tuple[str, ...]) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise MedclError(f"--stages: unknown stage(s) {unknown}; expected a chain of {', '.join(STAGES)}")
    if "classifier" in stages and "fusion" in stages:
        raise MedclError("--stages: choose either 'classifier' or 'fusion' as the last step")


def _warn_empty_classes(data: ECGData) -> None:
    positive_weights(torch.as_tensor(data.labels_of("train")), names=data.labels)


def training_card(cfg: ECGConfig, data: ECGData, val_probs: np.ndarray, val_y: np.ndarray) -> dict[str, Any]:
    """The model card stored in the checkpoint (``extra["model_card"]``, the schema of
    :mod:`medcl.engine.model_card`) and shown on every report and by ``medcl info``.

    A folder written by ``medcl data synth ecg`` (it holds ``synthetic_truth.json``) is recorded as
    synthetic. Only the folder's name is stored, never its path.
    """
    import datetime as dt

    from medcl.data.synthetic.ecg import TRUTH_FILE
    from medcl.engine.model_card import model_card
    from medcl.explain.model_card import INTENDED_USE_MODEL
    from medcl.metrics.auroc import auroc_summary

    root = Path(cfg.data.root)
    synthetic = (root / TRUTH_FILE).is_file()
    n_train = len(data.ptbxl.split_indices("train"))
    kind = "synthetic PTB-XL-shaped ECGs (medcl data synth ecg)" if synthetic else "PTB-XL-layout folder"
    macro = auroc_summary(val_y, val_probs, n_boot=0)["macro"]["value"] if len(val_y) else None
    name = root.resolve().name
    card = model_card("ecg", [{"name": name, "cases": n_train, "annotated": [], "synthetic": synthetic}],
                      INTENDED_USE_MODEL, validation={} if macro is None else {"macro_auroc": macro})
    return {**card, "description": f"{kind} '{name}': {n_train} training records",
            "n_validation_cases": int(len(val_y)), "date": dt.date.today().isoformat()}


def _is_main() -> bool:
    from medcl.engine.distributed import rank

    return rank() == 0


def run_stages(cfg: ECGConfig, out_dir: str | os.PathLike, stages: tuple[str, ...],
               resume: str | os.PathLike | None = None) -> Path:
    """Run a chain of stages (see :func:`medcl.pipelines.ecg.train`)."""
    from medcl.engine import seed_everything

    _check_stages(stages)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = load_data(cfg, workers=cfg.train.num_workers or None)
    _warn_empty_classes(data)
    net = build_net(cfg, data.groups, len(data.labels))
    if cfg.model.init_2d and stages[0] == "joint":
        init_2d_branches(net, cfg.model.init_2d)
    extra: dict[str, Any] = {"head": "branches", "stages": []}
    start = _start_point(stages, out, resume)
    if start is not None:
        net, _, _, extra = load_model(start)
        resume = None
    for i, stage in enumerate(stages):
        done = find_stage_model(out, stage)
        if done is not None:
            net, _, _, extra = load_model(done)
            log.info("stage %s: already done (%s)", stage, done)
            continue
        if stage == "project":
            extra["projection"] = project_prototypes(net.to(pick_device()), data, cfg)
        else:
            net = _fit_stage(stage, cfg, data, net, extra, out, resume if i == 0 else None)
            extra["head"] = "fusion" if stage == "fusion" else ("branches" if stage == "classifier" else extra["head"])
        extra["stages"] = [*extra.get("stages", []), stage]
        if _is_main():
            save_model(model_file(out, stage), net, cfg, data.labels, extra)
    probs, y = predict_split(net.to(pick_device()), data, "val", extra["head"], cfg.data.batch_size)
    extra["thresholds"] = best_f1_thresholds(y, probs).tolist()
    extra["model_card"] = training_card(cfg, data, probs, y)
    if _is_main():
        save_model(model_file(out), net, cfg, data.labels, extra)
    return model_file(out)
