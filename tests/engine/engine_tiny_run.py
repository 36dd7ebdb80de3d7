"""A tiny training run on the shared engine, used by the DDP and kill-and-resume tests.

Run as a script (also under ``torchrun``); writes the final weights to ``<out>/final.pt``.
Environment ``MEDCL_TEST_PAUSE_EPOCH=k`` makes it write ``<out>/paused`` and sleep at the start of
epoch ``k`` (after epoch ``k-1``'s checkpoint exists) so a test can SIGKILL it there.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from medcl.config import TrainConfig
from medcl.engine import MedclModule, build_trainer, fit, seed_everything


class TinyModule(MedclModule):
    family = "sepclr"

    def __init__(self) -> None:
        net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
        super().__init__(net, config={"tiny": True}, label_map={"bg": 0, "tg": 1})

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x).squeeze(-1), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=1e-2)


class PauseAt(L.Callback):
    def __init__(self, epoch: int, out: Path) -> None:
        self.epoch, self.out = epoch, out

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            (self.out / "paused").write_text("1")
            time.sleep(120)


def dataset() -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, :4].sum(1) - x[:, 4:].sum(1)).tanh()
    return TensorDataset(x, y)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shuffle", type=int, default=1)
    parser.add_argument("--dropout", type=int, default=1)
    parser.add_argument("--resume", default=None)
    args = parser.parse_args()
    out = Path(args.out)
    torch.set_num_threads(1)
    seed_everything(7, deterministic=True)
    module = TinyModule()
    if not args.dropout:
        module.net[2].p = 0.0
    cfg = TrainConfig(max_epochs=args.epochs, devices=args.devices, accelerator="cpu", deterministic=True, seed=7)
    callbacks = []
    pause = os.environ.get("MEDCL_TEST_PAUSE_EPOCH")
    if pause is not None:
        callbacks.append(PauseAt(int(pause), out))
    ds = dataset()
    if args.devices > 1 and not args.shuffle:
        # Lightning always shuffles a training set it shards itself; shard in order here instead.
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=False)
        loader = DataLoader(ds, batch_size=args.batch, sampler=sampler)
        trainer = build_trainer(cfg, out, extra_callbacks=callbacks, logger=False, use_distributed_sampler=False)
    else:
        loader = DataLoader(ds, batch_size=args.batch, shuffle=bool(args.shuffle))
        trainer = build_trainer(cfg, out, extra_callbacks=callbacks, logger=False)
    fit(trainer, module, resume=args.resume, train_dataloaders=loader)
    if trainer.is_global_zero:
        torch.save({k: v.clone() for k, v in module.net.state_dict().items()}, out / "final.pt")


if __name__ == "__main__":
    main()
