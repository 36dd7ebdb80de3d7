"""SepCLR 2D inputs: RGB/grey PNG and JPEG manifests load and train, ImageNet init from a local
torchvision-layout ResNet-18 state dict, natural-proportion batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medcl.config import load_config
from medcl.data.samplers import NaturalBatchSampler
from medcl.errors import MedclError
from medcl.nets.init import load_imagenet_resnet
from medcl.nets.sepclr import build_encoder
from medcl.transforms.sepclr import build_transforms


def _rgb(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_rgb_and_grey_files_load_with_their_colours(tmp_path):
    rgb = _rgb(0, 20)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "g.png")
    chain3 = build_transforms([20, 20], intensity="none", augment=False, channels=3)
    out = np.asarray(chain3({"image": str(tmp_path / "a.png")})["image"])
    assert out.shape == (3, 20, 20)
    np.testing.assert_array_equal(out, rgb.transpose(2, 1, 0))  # MONAI's PIL reader: (C, x, y)
    grey3 = np.asarray(chain3({"image": str(tmp_path / "g.png")})["image"])
    np.testing.assert_array_equal(grey3, np.repeat(rgb[None, ..., 1].transpose(0, 2, 1), 3, 0))
    chain1 = build_transforms([20, 20], intensity="none", augment=False, channels=1)
    luma = np.asarray(chain1({"image": str(tmp_path / "a.png")})["image"])[0]
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(luma, expected.T, rtol=1e-5)


def test_two_channel_png_is_a_one_line_error(tmp_path):
    Image.fromarray(_rgb(1)[..., :2].copy(), mode="LA").save(tmp_path / "la.png")
    chain = build_transforms([32, 32], intensity="none", augment=False, channels=3)
    with pytest.raises(MedclError, match=r"la.png: has 2 channels; model.in_channels is 3"):
        chain({"image": str(tmp_path / "la.png")})


def test_rgb_png_and_jpeg_manifest_trains_and_embeds(tmp_path):
    from medcl.pipelines.sepclr import SepCLRConfig, embed, train

    rows = []
    for i in range(12):
        image = _rgb(i)
        if i % 2:  # targets: a bright red square (a salient pattern)
            image[8:20, 8:20] = (255, 0, 0)
        name = f"im{i}.png" if i % 3 else f"im{i}.jpg"
        Image.fromarray(image).save(tmp_path / name)
        rows.append({"path": name, "group": "target" if i % 2 else "background", "colour": i % 4})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    cfg = load_config(SepCLRConfig, None, [
        f"data.manifest={tmp_path / 'manifest.csv'}", "data.spatial_dims=2", "data.spatial_size=[32,32]",
        "data.pixdim=null", "data.batch_size=6", "data.sampler=natural", "model.in_channels=3", "model.depth=10",
        "model.width=4", "model.cifar_stem=false", "augment.preset=paper", "train.max_steps=2",
        "train.accelerator=cpu", "train.precision=32-true", "train.loggers=[]", "train.progress_bar=false",
    ])  # fmt: skip
    ckpt = train(cfg, tmp_path / "run")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["medcl"]["state_dict"]
    stem = next(v for k, v in state.items() if k.endswith("common_encoder.conv1.weight"))
    assert stem.shape[1] == 3
    table = pd.read_csv(embed(ckpt, tmp_path / "manifest.csv", tmp_path / "out"))
    assert len(table) == 12 and np.isfinite(table.filter(regex=r"^(c|s|zc|zs)_").to_numpy()).all()


def _torchvision_resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's resnet18 key names and shapes (written out from its architecture)."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g)}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean"):
            state[f"{prefix}.{name}"] = torch.randn(c, generator=g)
        state[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    bn("bn1", 64)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            first_in = cin if block == 0 else cout
            state[f"{p}.conv1.weight"] = torch.randn(cout, first_in, 3, 3, generator=g)
            bn(f"{p}.bn1", cout)
            state[f"{p}.conv2.weight"] = torch.randn(cout, cout, 3, 3, generator=g)
            bn(f"{p}.bn2", cout)
            if block == 0 and stage > 1:
                state[f"{p}.downsample.0.weight"] = torch.randn(cout, cin, 1, 1, generator=g)
                bn(f"{p}.downsample.1", cout)
        cin = cout
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512, generator=g), torch.randn(1000, generator=g)
    return state


def test_imagenet_init_loads_torchvision_layout(tmp_path):
    state = _torchvision_resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    rgb = build_encoder(32, spatial_dims=2, in_channels=3, depth=18, width=64, cifar_stem=False)
    fc_before = rgb.fc.weight.clone()
    loaded = load_imagenet_resnet(rgb, path)
    biases = {f"layer{i}.0.downsample.0.bias" for i in (2, 3, 4)}  # MONAI-only, set to zero
    assert set(loaded) == (set(state) - {"fc.weight", "fc.bias"}) | biases
    assert all(float(rgb.get_parameter(b).abs().sum()) == 0 for b in biases)
    torch.testing.assert_close(rgb.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(rgb.layer3[0].downsample[1].running_var, state["layer3.0.downsample.1.running_var"])
    torch.testing.assert_close(rgb.fc.weight, fc_before)  # the embedding layer keeps its own init
    grey = build_encoder(32, spatial_dims=2, in_channels=1, depth=18, width=64, cifar_stem=False)
    load_imagenet_resnet(grey, path)
    torch.testing.assert_close(grey.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))

    narrow = build_encoder(32, spatial_dims=2, in_channels=3, depth=18, width=32, cifar_stem=False)
    with pytest.raises(MedclError, match=r"resnet18.pth: conv1.weight has shape \(64, 3, 7, 7\); the encoder expects"):
        load_imagenet_resnet(narrow, path)
    (tmp_path / "junk.pth").write_bytes(b"not a zip")
    with pytest.raises(MedclError, match=r"junk.pth: not a loadable state dict"):
        load_imagenet_resnet(rgb, tmp_path / "junk.pth")


def test_init_needs_the_standard_resnet18_config():
    from medcl.pipelines.sepclr import SepCLRConfig

    with pytest.raises(MedclError, match=r"model.init loads an ImageNet ResNet-18: needs data.spatial_dims=2"):
        load_config(SepCLRConfig, None, ["model.init=w.pth", "data.spatial_dims=3"])
    cfg = load_config(SepCLRConfig, None, ["model.init=w.pth", "data.spatial_dims=2", "data.spatial_size=[224,224]",
                                           "model.cifar_stem=false", "model.in_channels=3"])  # fmt: skip
    assert cfg.model.init == "w.pth"


def test_natural_sampler_keeps_proportions_and_drops_last():
    groups = np.array([0] * 75 + [1] * 25)
    sampler = NaturalBatchSampler(groups, 16, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6  # 100 // 16, the last 4 dropped
    flat = np.concatenate(batches)
    assert np.unique(flat).size == flat.size == 96  # each sample at most once per epoch
    assert abs(groups[flat].mean() - 0.25) < 0.03  # natural proportions, not 50/50
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ranks = [np.concatenate(list(NaturalBatchSampler(groups, 16, 0, num_replicas=2, rank=r))) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 48 and not set(ranks[0]) & set(ranks[1])
