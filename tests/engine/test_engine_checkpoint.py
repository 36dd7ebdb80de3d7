"""Checkpoints: medcl payload round trip, safe loading, family and shape errors; gather helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from medcl.config import TrainConfig
from medcl.engine import (
    MedclModule,
    build_trainer,
    checkpoint_path,
    fit,
    load_model_checkpoint,
    load_state_into,
)
from medcl.engine.distributed import best_across_ranks, gather_with_grad
from medcl.errors import MedclError


class Wrapped(MedclModule):
    family = "zones"

    def __init__(self) -> None:
        super().__init__(nn.Linear(3, 2), config={"model": {"width": 3}}, label_map={"background": 0, "PZ": 1})
        self.medcl_extra = {"note": "x", "ids": torch.arange(3)}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("val_dice", -loss.detach())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Wrapped]:
    out = tmp_path_factory.mktemp("run")
    module = Wrapped()
    data = TensorDataset(torch.randn(16, 3), torch.randint(0, 2, (16,)))
    trainer = build_trainer(TrainConfig(max_epochs=2, accelerator="cpu"), out, monitor="val_dice", logger=False)
    fit(trainer, module, train_dataloaders=DataLoader(data, batch_size=4))
    return out, module


def test_payload_round_trip(trained: tuple[Path, Wrapped]) -> None:
    out, module = trained
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "checkpoints" / "best.ckpt").is_file()
    ckpt = load_model_checkpoint(checkpoint_path(out), "zones")
    assert ckpt.config == {"model": {"width": 3}} and ckpt.label_map == {"background": 0, "PZ": 1}
    assert ckpt.versions["torch"] == str(torch.__version__) and ckpt.extra["note"] == "x"
    last = load_model_checkpoint(out / "checkpoints" / "last.ckpt", "zones")
    fresh = load_state_into(nn.Linear(3, 2), last)
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    assert not any(k.startswith("net.") for k in ckpt.state_dict)  # unwrapped names


def test_wrong_family_and_shape(trained: tuple[Path, Wrapped]) -> None:
    out, _ = trained
    path = out / "checkpoints" / "last.ckpt"
    with pytest.raises(MedclError, match="family 'zones', expected 'ecg'"):
        load_model_checkpoint(path, "ecg")
    with pytest.raises(MedclError, match="weights do not fit"):
        load_state_into(nn.Linear(4, 2), load_model_checkpoint(path, "zones"))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(MedclError, match="not a loadable checkpoint"):
        load_model_checkpoint(junk, "zones")
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(MedclError, match="not a medcl checkpoint"):
        load_model_checkpoint(plain, "zones")
    with pytest.raises(MedclError, match="not found"):
        load_model_checkpoint(tmp_path / "absent.ckpt", "zones")


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"medcl": {"family": "zones", "state_dict": {}, "module": nn.Linear(1, 1)}}, evil)
    with pytest.raises(MedclError, match=r"refused: contains code \(torch\.nn"):
        load_model_checkpoint(evil, "zones")


def test_gather_helpers_are_identity_without_process_group() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    y = gather_with_grad(x)
    y.sum().backward()
    assert torch.equal(y, x) and torch.equal(x.grad, torch.ones_like(x))
    score, payload = best_across_ranks(torch.tensor([0.2, 0.9]), torch.tensor([3, 4]))
    assert score.tolist() == pytest.approx([0.2, 0.9]) and payload.tolist() == [3, 4]


def test_one_run_folder_layout_and_the_older_ones(trained: tuple[Path, Wrapped], tmp_path: Path) -> None:
    from medcl.engine import find_model, find_stage_model, model_file, publish_model

    out, module = trained
    # a run of the older layout (checkpoints/ without model.ckpt) loads as a folder
    assert load_model_checkpoint(out, "zones").path == out / "checkpoints" / "best.ckpt"
    model = publish_model(out / "checkpoints" / "last.ckpt", out)
    assert model == model_file(out) == out / "model.ckpt" and find_model(out) == model
    slim = torch.load(model, weights_only=True)
    assert set(slim) == {"medcl"}  # no optimiser or loop state
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(load_model_checkpoint(out, "zones").state_dict[key], value)
    # stages: <out>/checkpoints/<stage>/ now, <out>/<stage>/checkpoints/ and <out>/<stage>/model.ckpt before
    old = tmp_path / "old"
    (old / "stage1" / "checkpoints").mkdir(parents=True)
    (old / "stage1" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert checkpoint_path(old, "best", "stage1") == old / "stage1" / "checkpoints" / "last.ckpt"
    assert checkpoint_path(old, "best", "stage2") == old / "checkpoints" / "stage2" / "last.ckpt"
    (old / "checkpoints" / "stage1").mkdir(parents=True)
    (old / "checkpoints" / "stage1" / "best.ckpt").write_bytes(b"y")
    assert checkpoint_path(old, "best", "stage1") == old / "checkpoints" / "stage1" / "best.ckpt"
    assert checkpoint_path(old, "last", "stage1") == old / "stage1" / "checkpoints" / "last.ckpt"
    assert find_stage_model(old, "joint") is None
    (old / "joint").mkdir()
    (old / "joint" / "model.ckpt").write_bytes(b"z")
    assert find_stage_model(old, "joint") == old / "joint" / "model.ckpt"
    with pytest.raises(MedclError, match="no model.ckpt"):
        find_model(tmp_path / "empty")
