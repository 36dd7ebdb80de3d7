"""Prostate phantoms, the zone label map, remappers and the datalist helpers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medcl.data.datalist import read_datalist
from medcl.data.synthetic.prostate import make_phantom, write_dataset
from medcl.data.zones_labels import remap_labels, resolve_remap, split_targets
from medcl.errors import MedclError


def _world_centroid(ph, value: int) -> np.ndarray:
    idx = np.argwhere(ph.label == value).T.astype(float)
    return (ph.affine[:3, :3] @ idx + ph.affine[:3, 3:]).mean(1)


def test_phantom_is_deterministic_and_seed_dependent() -> None:
    a, b, c = make_phantom(5), make_phantom(5), make_phantom(6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phantom_anatomy_geometry_and_contrast(seed: int) -> None:
    ph = make_phantom(seed)
    assert ph.image.shape == ph.label.shape == (96, 96, 16) and ph.image.dtype == np.float32
    assert set(np.unique(ph.label)) == {0, 1, 2, 3, 4}
    np.testing.assert_allclose(np.linalg.norm(ph.affine[:3, :3], axis=0), [0.5, 0.5, 3.0])
    assert np.abs(ph.affine[:3, :3] - np.diag(np.diag(ph.affine[:3, :3]))).max() > 1e-3  # oblique
    # RAS: +y is anterior. PZ lies posterior to the TZ, AFS anterior; the DPU runs through the TZ.
    tz = _world_centroid(ph, 2)
    assert _world_centroid(ph, 1)[1] < tz[1] < _world_centroid(ph, 4)[1]
    assert abs(_world_centroid(ph, 3)[0] - tz[0]) < 2.0
    # the field of view is larger than the gland (the gland does not touch the in-plane border)
    gland = ph.label > 0
    assert not gland[[0, -1]].any() and not gland[:, [0, -1]].any()
    # T2w contrast: PZ bright, TZ intermediate, AFS dark
    means = [ph.image[ph.label == v].mean() for v in (1, 2, 4)]
    assert means[0] > means[1] > means[2]


def test_write_dataset_round_trip_and_datalist(tmp_path) -> None:
    path = write_dataset(tmp_path / "ph", n=5, seed=3, n_unlabeled=2, shape=(48, 48, 8))
    data = json.loads(path.read_text())
    assert len(data["training"]) == 4 and len(data["validation"]) == 1 and len(data["unlabeled"]) == 2
    assert data["labels"]["4"] == "AFS" and not data["training"][0]["image"].startswith("/")
    train = read_datalist(path, "training", ("image", "label"))
    unlabeled = read_datalist(path, "unlabeled")
    assert "label" not in unlabeled[0]
    ph = make_phantom(3 * 100003 + 0, (48, 48, 8))
    img, lab = nib.load(train[0]["image"]), nib.load(train[0]["label"])
    np.testing.assert_allclose(img.affine, ph.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(lab.dataobj), ph.label)
    np.testing.assert_allclose(img.get_fdata(dtype=np.float32), ph.image)


def test_read_datalist_errors_name_file_and_key(tmp_path) -> None:
    path = write_dataset(tmp_path, n=2, seed=0, shape=(32, 32, 4))
    assert read_datalist(path, "unlabeled", optional=True) == []
    with pytest.raises(MedclError, match="unlabeled: list is missing"):
        read_datalist(path, "unlabeled")
    data = json.loads(path.read_text())
    data["training"][0]["label"] = "labelsTr/nope.nii.gz"
    path.write_text(json.dumps(data))
    with pytest.raises(MedclError, match=r"training\[0\]\.label: file .*nope"):
        read_datalist(path, "training", ("image", "label"))


def test_remappers_and_path_targets() -> None:
    msd = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(remap_labels(msd, resolve_remap("msd")), [[0, 1], [2, 1]])
    custom = resolve_remap({"1": 2, "2": 1, "0": 0})
    np.testing.assert_array_equal(remap_labels(msd, custom), [[0, 2], [1, 2]])
    with pytest.raises(MedclError, match=r"seg.nii: label values \[3\]"):
        remap_labels(np.array([0, 3]), resolve_remap("msd"), source="seg.nii")
    with pytest.raises(MedclError, match="unknown remapper"):
        resolve_remap("brats")
    targets = split_targets(torch.arange(5))
    assert targets["a"].tolist() == [0, 1, 2, 2, 0]
    assert targets["b"].tolist() == [0, 0, 1, 2, 3]
    assert targets["gland"].tolist() == [0, 1, 1, 1, 1]
