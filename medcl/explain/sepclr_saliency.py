"""Where is the salient pattern? Integrated Gradients of ``||s||`` mapped back onto the input scan.

The salient encoder of SepCLR (Louiset et al., ICLR 2024) sends background subjects to ``s = 0``,
so the norm ``||s||`` measures how much target-specific pattern an image holds. Its attribution
with captum's Integrated Gradients (Sundararajan et al. 2017; baseline: the all-zero image) is
computed on the network's grid, inverted through the MONAI preprocessing (crop/pad, resampling,
orientation) with ``Invertd`` and written on the exact input geometry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd, MapTransform

from medcl.transforms.geometry import MedclCompose, surface_medcl_errors

__all__ = ["explain_image", "salient_attribution"]


def salient_attribution(net: torch.nn.Module, x: torch.Tensor, n_steps: int = 16) -> torch.Tensor:
    """Integrated Gradients of ``net.salient_norm`` w.r.t. ``x`` ``(B, C, *spatial)``, same shape."""
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(net.salient_norm)
    return ig.attribute(x, baselines=torch.zeros_like(x), n_steps=n_steps, internal_batch_size=n_steps)


def _write_overlay(array: torch.Tensor, reference: MetaTensor, path: Path) -> Path:
    """Write on the reference grid: :func:`medcl.io.image.write_like` for 3D, nibabel for 2D."""
    if reference.ndim == 4:
        from medcl.io.image import write_like

        return write_like(array, reference, path)
    import nibabel as nib
    from monai.data.utils import to_affine_nd

    from medcl.utils import atomic_write_path

    affine = to_affine_nd(3, np.asarray(reference.affine, dtype=np.float64))
    with atomic_write_path(path) as tmp:
        nib.save(nib.Nifti1Image(np.asarray(array[0], np.float32), affine), tmp)
    return path


def explain_image(
    net: torch.nn.Module,
    image: str | os.PathLike,
    out_path: str | os.PathLike,
    load: Sequence[MapTransform],
    preprocess: Sequence[MapTransform],
    n_steps: int = 16,
) -> Path:
    """Attribution map of one scan, written as a NIfTI overlay on the input geometry.

    Args:
        net: a trained ``SepCLRNet`` in eval mode.
        image: the scan (any geometry the loader reads).
        out_path: output ``.nii.gz``.
        load: transforms reading ``{"image": path}`` channel-first (geometry kept in metadata).
        preprocess: the invertible preprocessing chain used in training (without augmentation).
        n_steps: Integrated-Gradients steps.
    """
    pre = MedclCompose(list(preprocess))
    with surface_medcl_errors():
        data = MedclCompose(list(load))({"image": str(image)})
        reference = data["image"].clone()
        data = pre(data)
    device = next(net.parameters()).device
    x = data["image"].as_tensor()[None].to(device)
    attr = salient_attribution(net, x, n_steps)[0].detach().cpu()
    data["attribution"] = MetaTensor(attr, meta=data["image"].meta)
    inverted = Invertd("attribution", transform=pre, orig_keys="image", nearest_interp=False)(data)
    return _write_overlay(inverted["attribution"], reference, Path(out_path))
