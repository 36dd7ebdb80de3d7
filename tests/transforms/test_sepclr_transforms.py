"""SepCLR transform recipes: fixed output grid, canonical orientation, deterministic training chain."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from medcl.transforms.sepclr import build_transforms


def test_3d_chain_reorients_resamples_and_fixes_size(tmp_path):
    # LPS-like (x flipped) 2 mm volume with a bright voxel block at the +x end
    data = np.zeros((10, 12, 8), np.float32)
    data[:3] = 100.0  # low voxel indices are the largest world x (R): the x axis is flipped
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    out = build_transforms([16, 16, 16], pixdim=[1.0, 1.0, 1.0], augment=False)({"image": str(path)})["image"]
    assert out.shape == (1, 16, 16, 16)
    assert np.allclose(np.diag(np.asarray(out.affine))[:3], [1.0, 1.0, 1.0])  # RAS, 1 mm
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    profile = out[0].mean(dim=(1, 2))
    assert profile[-1] > profile[0]  # the bright side is now at the high-index (Right) end


def test_training_chain_is_deterministic_and_yields_plain_tensors():
    """Random views are made later, batched on the device; the cached chain itself must not be random."""
    image = np.random.default_rng(0).random((1, 30, 34)).astype(np.float32)
    chain = build_transforms([32, 32], intensity="none", load=False)
    a, b = chain({"image": image})["image"], chain({"image": image})["image"]
    assert type(a) is torch.Tensor and a.shape == (1, 32, 32)  # no MetaTensor in the training batches
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[0, 1:31], torch.as_tensor(image[0, :, 1:33]))  # centred crop/pad
