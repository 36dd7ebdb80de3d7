"""The reference side of the SepCLR step benchmark computes what medcl's step computes (equal work)."""

from __future__ import annotations

import pytest
import torch

from medcl.config import load_config
from medcl.pipelines.bench.sepclr_reference import (
    OfficialAugmentation,
    ReferenceEncoder,
    reference_loss,
    to_medcl_state,
)
from medcl.pipelines.sepclr import SepCLRConfig
from medcl.pipelines.sepclr_train import SepCLRModule


def _module() -> SepCLRModule:
    cfg = load_config(SepCLRConfig, None, ["data.spatial_dims=2", "data.spatial_size=[24,24]", "data.pixdim=null",
                      "model.in_channels=3", "model.depth=18", "model.width=64", "model.cifar_stem=true",
                      "loss.preset=natural", "loss.gather=false"])  # fmt: skip
    return SepCLRModule(cfg)


def test_reference_and_medcl_step_give_the_same_loss_and_gradients_float64():
    torch.manual_seed(0)
    ref = ReferenceEncoder().double()
    module = _module().double()
    module.net.load_state_dict(to_medcl_state(ref.state_dict()))  # strict: every layer maps
    v1, v2 = torch.rand(2, 8, 3, 24, 24, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    expected = reference_loss(ref, v1, v2, labels)
    got = module.loss_terms(v1.contiguous(memory_format=torch.channels_last),
                            v2.contiguous(memory_format=torch.channels_last), labels).total  # fmt: skip
    assert got.item() == pytest.approx(expected.item(), rel=1e-10)
    expected.backward()
    got.backward()
    ref_grad = ref.specific_enc.conv1.weight.grad
    torch.testing.assert_close(module.net.salient_encoder.conv1.weight.grad, ref_grad, rtol=1e-7, atol=1e-9)


def test_official_augmentation_makes_24px_views_in_range():
    torch.manual_seed(0)
    out = OfficialAugmentation(24)(torch.rand(16, 3, 32, 32))
    assert out.shape == (16, 3, 24, 24) and 0.0 <= out.min() and out.max() <= 1.0
