"""SepCLR transform recipes: fixed output grid, canonical orientation, independent reproducible views."""

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


def test_two_views_differ_and_are_reproducible():
    image = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)

    def views(seed: int):
        chain = build_transforms([32, 32], intensity="none", load=False)
        chain.set_random_state(seed=seed)
        out = chain({"image": image})
        return out["view1"], out["view2"]

    a1, a2 = views(0)
    b1, b2 = views(0)
    assert a1.shape == a2.shape == (1, 32, 32)
    assert not torch.equal(torch.as_tensor(a1), torch.as_tensor(a2))
    torch.testing.assert_close(torch.as_tensor(a1), torch.as_tensor(b1))
    torch.testing.assert_close(torch.as_tensor(a2), torch.as_tensor(b2))
