"""Zones transform recipes: geometry to canonical RAS, remapping, SDM target, patch sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medcl.data.datalist import read_datalist
from medcl.data.synthetic.prostate import write_dataset
from medcl.errors import MedclError
from medcl.transforms.zones import RemapLabelsd, signed_distance, zones_train_transforms, zones_val_transforms


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> list[dict]:
    path = write_dataset(tmp_path_factory.mktemp("tf"), n=2, seed=4, n_validation=0)
    return read_datalist(path, "training", ("image", "label"))


def _centroid(label: np.ndarray, value: int) -> np.ndarray:
    return np.argwhere(label == value).mean(0)


def test_val_chain_gives_canonical_ras_grid_and_scaled_intensities(items) -> None:
    out = zones_val_transforms()(items[0])
    image, label = out["image"], out["label"][0].numpy().astype(int)
    assert image.shape[1:] == label.shape and float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert set(np.unique(label)) == {0, 1, 2, 3, 4}
    # RAS voxel axes: +axis 1 is anterior, so PZ (posterior) has a lower index than TZ and AFS
    pz, tz, afs = (_centroid(label, v) for v in (1, 2, 4))
    assert pz[1] < tz[1] < afs[1]
    # the resampled grid keeps the phantom's physical gland size (about 0.5 x 0.5 x 3 mm voxels)
    raw = np.asarray(__import__("nibabel").load(items[0]["label"]).dataobj)
    assert abs((label > 0).sum() - (raw > 0).sum()) / (raw > 0).sum() < 0.15


def test_train_chain_samples_foreground_patches_of_the_requested_size(items) -> None:
    transform = zones_train_transforms((32, 32, 8), sdm=True, num_samples=4, pos=1.0, neg=0.0)
    transform.set_random_state(seed=0)
    patches = transform(items[1])
    assert len(patches) == 4
    for p in patches:
        assert p["image"].shape == p["label"].shape == p["aux"].shape == (1, 32, 32, 8)
        assert isinstance(p["image"], torch.Tensor) and not isinstance(p["image"], MetaTensor)
        assert (p["label"] > 0).any()  # pos-only sampling centres patches on the gland
        # SDM negative inside the gland, positive outside (up to interpolation at the boundary)
        agree = (p["aux"] < 0) == (p["label"] > 0)
        assert float(agree.float().mean()) > 0.95


def test_unlabeled_chain_yields_image_patches(items) -> None:
    patches = zones_train_transforms((32, 32, 8), labeled=False, num_samples=2)({"image": items[0]["image"]})
    assert len(patches) == 2 and set(patches[0]) >= {"image"} and "label" not in patches[0]
    assert patches[0]["image"].shape == (1, 32, 32, 8)


def test_remap_msd_and_error_names_the_file() -> None:
    label = MetaTensor(torch.tensor([[[[0.0, 1.0, 2.0]]]]), meta={"filename_or_obj": "case7.nii.gz"})
    out = RemapLabelsd("label", {0: 0, 1: 2, 2: 1})({"label": label})["label"]
    assert out.flatten().tolist() == [0, 2, 1] and out.meta["filename_or_obj"] == "case7.nii.gz"
    bad = MetaTensor(torch.tensor([[[[0.0, 5.0]]]]), meta={"filename_or_obj": "case8.nii.gz"})
    with pytest.raises(MedclError, match=r"case8.nii.gz: label values \[5\]"):
        RemapLabelsd("label", "msd")({"label": bad})


def test_signed_distance_hand_values_with_anisotropic_spacing() -> None:
    mask = torch.zeros(1, 1, 1, 7, dtype=torch.bool)
    mask[..., 2:5] = True  # slab along the slice axis, spacing 3 mm
    sdm = signed_distance(mask, (0.5, 0.5, 3.0), scale_mm=3.0)
    # distances (mm): outside 6, 3 | inside -3, -6, -3 | outside 3, 6 (EDT to the nearest opposite voxel)
    expected = torch.tanh(torch.tensor([6.0, 3.0, -3.0, -6.0, -3.0, 3.0, 6.0]) / 3.0)
    torch.testing.assert_close(sdm.flatten(), expected)
    assert torch.equal(
        signed_distance(torch.zeros(1, 2, 2, 2, dtype=torch.bool), (1, 1, 1)), torch.ones(1, 2, 2, 2)
    )


def test_bad_scan_in_a_datalist_is_a_one_line_error_not_a_wrapped_runtime_error(tmp_path) -> None:
    import nibabel as nib

    image = np.full((16, 16, 4), np.nan, dtype=np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([0.5, 0.5, 3.0, 1.0])), tmp_path / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.uint8), np.diag([0.5, 0.5, 3.0, 1.0])), tmp_path / "lab.nii.gz")
    item = {"image": str(tmp_path / "nan.nii.gz"), "label": str(tmp_path / "lab.nii.gz")}
    with pytest.raises(MedclError, match="nan.nii.gz"):
        zones_val_transforms()(item)


def test_near_gland_indices_hand_values_with_anisotropic_spacing() -> None:
    from medcl.transforms.zones import near_gland_indices

    label = torch.zeros(1, 9, 9, 5)
    label[0, 4, 4, 2] = 1  # one gland voxel; spacing 1 x 1 x 3 mm, margin 2 mm
    fg, bg = near_gland_indices(label, (1.0, 1.0, 3.0), 2.0)
    assert fg.tolist() == [np.ravel_multi_index((4, 4, 2), (9, 9, 5))]
    near = np.array(np.unravel_index(bg, (9, 9, 5))).T - (4, 4, 2)
    # in-plane disc of radius 2 mm (12 voxels besides the centre); the slices 3 mm away are too far
    assert len(bg) == 12 and set(near[:, 2]) == {0}
    assert ((near[:, :2] ** 2).sum(1) <= 4).all()


def test_near_gland_negatives_are_centred_next_to_the_gland() -> None:
    from monai.transforms import Compose

    from medcl.transforms.zones import zones_train_augment

    label = torch.zeros(1, 60, 60, 8)
    label[0, 25:35, 25:35, 2:6] = 1
    chain = Compose(zones_train_augment((9, 9, 7), num_samples=16, pos=0.0, neg=1.0, neg_margin_mm=3.0,
                                        rotate_deg=0.0, scale=0.0, translate_vox=(0, 0, 0), flip_lr=False,
                                        intensity=False))
    chain.set_random_state(0)
    patches = chain({"image": torch.rand(1, 60, 60, 8), "label": label})
    assert all(set(p) == {"image", "label"} for p in patches)  # the index keys are dropped
    # every 9 x 9 x 7 patch is centred within 3 voxels of the gland, so it overlaps it
    assert all(float(p["label"].sum()) > 0 for p in patches)
