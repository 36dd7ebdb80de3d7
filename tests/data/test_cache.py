"""Dataset caching keyed by the transform chain (medcl.data.cache)."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import CacheDataset
from monai.transforms import Compose, RandFlipd, ScaleIntensityd

from medcl.data.cache import cache_key, cached_dataset, chain_hash, describe, deterministic_prefix
from medcl.errors import MedclError
from medcl.transforms.geometry import invert_to_input, load_canonical, percentile_scale

torch.set_num_threads(1)


@pytest.fixture()
def items(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        affine = np.diag([-0.8, -0.8, 2.0, 1.0])
        affine[:3, 3] = [10.0 * i, 5.0, -3.0]
        nib.save(nib.Nifti1Image(rng.random((10, 9, 5)).astype(np.float32), affine), tmp_path / f"s{i}.nii.gz")
        paths.append({"image": str(tmp_path / f"s{i}.nii.gz")})
    return paths


def _chain(pixdim=(1.0, 1.0, 2.0), flip_prob=0.5, upper=99.0) -> Compose:
    return Compose(
        [
            *load_canonical("image", pixdim=pixdim).transforms,
            percentile_scale("image", upper=upper),
            RandFlipd("image", prob=flip_prob, spatial_axis=0),
        ]
    )


def test_key_is_stable_across_fresh_builds_and_ignores_random_tail(items):
    assert cache_key(items, _chain()) == cache_key(items, _chain())
    assert cache_key(items, _chain()) == cache_key(items, _chain(flip_prob=0.9))  # after the cached prefix
    assert len(deterministic_prefix(_chain())) == 5  # load, channel, orientation, spacing, scale


@pytest.mark.parametrize("change", ["pixdim", "percentile", "files", "order"])
def test_key_changes_with_chain_or_file_list(items, change):
    base = cache_key(items, _chain())
    changed = {
        "pixdim": lambda: cache_key(items, _chain(pixdim=(1.0, 1.0, 2.5))),
        "percentile": lambda: cache_key(items, _chain(upper=98.0)),
        "files": lambda: cache_key(items[:1], _chain()),
        "order": lambda: cache_key(items[::-1], _chain()),
    }[change]()
    assert changed != base


def test_describe_has_no_memory_addresses_and_is_json():
    text = json.dumps(describe(deterministic_prefix(_chain())), sort_keys=True)
    assert " at 0x" not in text
    assert "Spacingd" in text and "[1.0, 1.0, 2.0]" in text
    assert chain_hash(deterministic_prefix(_chain())) != chain_hash(deterministic_prefix(_chain(pixdim=(2, 2, 2))))


def test_persistent_cache_reuses_items_with_metadata(tmp_path, items, monkeypatch):
    chain = Compose([*load_canonical("image", pixdim=(1.0, 1.0, 2.0)).transforms, ScaleIntensityd("image")])
    first = cached_dataset(items, chain, tmp_path / "cache")
    fresh = first[1]
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and (folders[0] / "cache_key.json").is_file()
    assert len(list(folders[0].glob("*.pt"))) == 1

    # A second dataset with an equal chain must not read the image again.
    monkeypatch.setattr("medcl.io.image.read_sitk_image", lambda *a, **k: pytest.fail("cache miss"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weights_only failure would warn "Corrupt cache file"
        cached = cached_dataset(items, chain, tmp_path / "cache")[1]
    assert torch.equal(cached["image"].as_tensor(), fresh["image"].as_tensor())
    np.testing.assert_allclose(cached["image"].affine.numpy(), fresh["image"].affine.numpy())
    # The transform trace survives the cache, so predictions can still be inverted.
    cached["pred"] = cached["image"].clone()
    inverted = invert_to_input("pred", chain, orig_keys="image")(cached)["pred"]
    assert inverted.shape == (1, 10, 9, 5)
    np.testing.assert_allclose(inverted.affine.numpy()[:3, 3], [10.0, 5.0, -3.0], atol=1e-5)


def test_changed_chain_uses_a_new_cache_folder(tmp_path, items):
    cached_dataset(items, _chain(), tmp_path / "cache")[0]
    cached_dataset(items, _chain(pixdim=(2.0, 2.0, 2.0)), tmp_path / "cache")[0]
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_memory_cache_and_bad_items(tmp_path, items):
    dataset = cached_dataset(items, _chain(flip_prob=0.0), None)
    assert isinstance(dataset, CacheDataset)
    assert dataset[0]["image"].shape == (1, 8, 7, 5)  # round(10 * 0.8), round(9 * 0.8), 5 at 1 x 1 x 2 mm
    with pytest.raises(MedclError, match="JSON-serialisable"):
        cached_dataset([{"image": object()}], _chain(), tmp_path / "cache")
