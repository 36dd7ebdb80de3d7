"""Batched two-view augmentation: per-sample randomness in one call, hand-checked geometry and intensity,
the presets' shapes, and config errors for bad keys."""

from __future__ import annotations

import pytest
import torch

from medcl.config import load_config
from medcl.errors import MedclError
from medcl.pipelines.sepclr import SepCLRConfig
from medcl.transforms.batch_augment import (
    AugmentConfig,
    RandBiasField,
    RandBrightnessContrast,
    RandFlip,
    RandGamma,
    RandResizedCrop3d,
    RandSmooth,
    build_augment,
)


def test_flip_draws_per_sample_in_one_batched_call():
    torch.manual_seed(0)
    x = torch.arange(8.0).view(1, 1, 8, 1).expand(64, 1, 8, 3).contiguous()
    out = RandFlip(axis=0, p=0.5)(x)
    flipped = (out[:, 0, 0, 0] == 7).float()
    assert torch.all((out[:, 0, 0, 0] == 0) | (out[:, 0, 0, 0] == 7))
    assert 0.25 < flipped.mean() < 0.75  # some samples flipped, some not
    torch.testing.assert_close(out[flipped.bool()], x[flipped.bool()].flip(2))


def test_resized_crop_3d_is_a_zoom_into_the_volume():
    """On a ramp v = x (normalised coordinate of voxel centres), the crop with side f centred at t gives
    v' = f x + t: slope f = (volume fraction)^(1/3) in [scale^(1/3)], and the crop stays inside [-1, 1].
    The outermost voxels may sample beyond the first/last voxel centre (border-clamped), so the line is
    checked one voxel in from each end, where f >= 1/3 keeps every sample inside."""
    torch.manual_seed(0)
    n = 16
    coords = (torch.arange(n) * 2 + 1) / n - 1  # align_corners=False voxel centres
    x = coords.view(1, 1, n, 1, 1).expand(32, 1, n, n, n).contiguous()
    out = RandResizedCrop3d((0.2, 0.6))(x)
    line, inner = out[:, 0, 1:-1, n // 2, n // 2], coords[1:-1]
    slope = (line[:, -1] - line[:, 0]) / (inner[-1] - inner[0])
    assert torch.all(slope >= 0.2 ** (1 / 3) - 1e-4) and torch.all(slope <= 0.6 ** (1 / 3) + 1e-4)
    assert slope.std() > 0.01  # a different crop for each sample
    torch.testing.assert_close(line, slope[:, None] * inner + line.mean(1, keepdim=True), atol=1e-4, rtol=0)
    assert torch.all(line.abs() <= 1.0 + 1e-5)
    identity = RandResizedCrop3d((1.0, 1.0))(x)
    torch.testing.assert_close(identity, x, atol=1e-5, rtol=0)


def test_intensity_ops_by_hand():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 6, 6, 6)
    out = RandBrightnessContrast(brightness=0.0, contrast=0.4, p=1.0)(x)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3, 4)), x.mean(dim=(1, 2, 3, 4)))  # contrast keeps the mean
    ratio = (out - out.mean(dim=(2, 3, 4), keepdim=True)) / (x - x.mean(dim=(2, 3, 4), keepdim=True))
    c = ratio.flatten(1).median(1).values
    assert torch.all((c >= 0.6 - 1e-4) & (c <= 1.4 + 1e-4)) and c.std() > 0.01
    gamma = RandGamma((0.5, 2.0), p=1.0)(x)
    for a, b in ((gamma, x),):  # gamma on the min-max range keeps each sample's min and max
        torch.testing.assert_close(a.flatten(1).min(1).values, b.flatten(1).min(1).values)
        torch.testing.assert_close(a.flatten(1).max(1).values, b.flatten(1).max(1).values)


@pytest.mark.parametrize(("preset", "spatial", "channels"),
                         [("basic", (32, 32), 1), ("paper", (32, 32), 1), ("paper", (32, 32), 3),
                          ("basic", (16, 16, 16), 1), ("paper", (16, 16, 16), 1)])  # fmt: skip
def test_presets_keep_shape_and_make_two_different_views(preset, spatial, channels):
    torch.manual_seed(0)
    augment = build_augment(AugmentConfig(preset=preset), spatial, channels)
    x = torch.rand(4, channels, *spatial)
    v1, v2 = augment(x), augment(x)
    assert v1.shape == v2.shape == x.shape and torch.isfinite(v1).all()
    assert not torch.allclose(v1, v2)


def test_paper_greyscale_on_rgb():
    augment = build_augment(AugmentConfig(preset="paper", grayscale_p=1.0, color_jitter_p=0.0), (24, 24), 3)
    out = augment(torch.rand(4, 3, 24, 24))
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])


def test_bad_augmentation_keys_are_one_line_config_errors():
    with pytest.raises(MedclError, match=r"^<overrides>: augment\.strength: unknown key$"):
        load_config(SepCLRConfig, None, ["augment.strength=2"])
    with pytest.raises(MedclError, match=r"augment\.preset: Input should be 'basic' or 'paper'"):
        load_config(SepCLRConfig, None, ["augment.preset=strong"])
    with pytest.raises(MedclError, match=r"augment\.crop_scale: .*0 < low <= high <= 1") as exc:
        load_config(SepCLRConfig, None, ["augment.crop_scale=[0.9,0.2]"])
    assert "\n" not in str(exc.value)
    cfg = load_config(SepCLRConfig, None, ["augment.preset=paper", "augment.rotation_degrees=45"])
    assert cfg.augment.preset == "paper" and cfg.augment.crop_scale == (0.2, 1.0)


def test_smoothing_and_bias_field_by_hand():
    torch.manual_seed(0)
    x = torch.zeros(4, 1, 9, 9, 9)
    x[:, :, 4, 4, 4] = 1.0  # an impulse: the output is the per-sample separable Gaussian kernel
    out = RandSmooth((0.5, 1.0), p=1.0)(x)
    torch.testing.assert_close(out.sum(dim=(1, 2, 3, 4)), torch.ones(4))  # normalised kernel, nothing lost
    line = out[:, 0, :, 4, 4] / out[:, 0, 4, 4, 4:5]
    sigma = (-0.5 / torch.log(line[:, 5])).sqrt()  # k(1) / k(0) = exp(-1 / (2 sigma^2))
    assert torch.all((sigma > 0.5 - 1e-3) & (sigma < 1.0 + 1e-3)) and sigma.std() > 0.01
    torch.testing.assert_close(line[:, 6], torch.exp(-2.0 / sigma**2))  # k(2) / k(0) with the same sigma
    flat = torch.ones(3, 1, 8, 8, 8)
    field = RandBiasField(3, (0.0, 0.1), p=1.0)(flat)
    assert torch.all(field > 0) and field.std() > 0
    log_field = field.log()  # a polynomial of degree <= 3 in each coordinate: 4th differences vanish
    torch.testing.assert_close(torch.diff(log_field, n=4, dim=2), torch.zeros(3, 1, 4, 8, 8), atol=1e-5, rtol=0)
