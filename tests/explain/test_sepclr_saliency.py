"""Salient attributions: Integrated-Gradients completeness and inversion back onto the input grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from medcl.explain.sepclr_saliency import explain_image, salient_attribution
from medcl.nets.sepclr import SepCLRNet
from medcl.transforms.sepclr import load_transforms, preprocess_transforms

torch.set_num_threads(2)


def _net(dims: int) -> SepCLRNet:
    torch.manual_seed(0)
    return SepCLRNet(4, 4, spatial_dims=dims, depth=10, width=4).double().eval()


def test_integrated_gradients_completeness():
    net = _net(2)
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    attr = salient_attribution(net, x, n_steps=64)
    assert attr.shape == x.shape
    gap = net.salient_norm(x) - net.salient_norm(torch.zeros_like(x))
    # IG axiom: attributions add up to f(x) - f(baseline) (up to the Riemann approximation)
    torch.testing.assert_close(attr.sum(dim=(1, 2, 3)), gap, rtol=0.05, atol=1e-3)


def test_overlay_is_written_on_the_input_geometry(tmp_path):
    # anisotropic, flipped, shifted grid that the preprocessing reorients, resamples and crops
    affine = np.array([[-0.8, 0, 0, 40.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).random((30, 22, 9)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    net = _net(3).float()
    out = explain_image(net, path, tmp_path / "ig.nii.gz", load_transforms(3),
                        preprocess_transforms([16, 16, 16], pixdim=[1.5, 1.5, 1.5]), n_steps=4)  # fmt: skip
    overlay = nib.load(out)
    assert overlay.shape == data.shape
    np.testing.assert_allclose(overlay.affine, affine, atol=1e-4)
    values = overlay.get_fdata()
    assert np.isfinite(values).all() and np.abs(values).sum() > 0

