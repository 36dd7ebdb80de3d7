"""Bundle-side pieces of medcl's zones inference that MONAI has no transform for.

Copied by ``medcl export --format bundle`` into ``<bundle>/scripts/``; imports only MONAI, torch,
numpy, scipy, nibabel and its sibling modules (``zones_window``: the ROI, window and flip TTA that
``medcl zones segment`` runs; ``postprocess``: medcl's zone post-processing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import CenterSpatialCrop, Cropd, MapTransform

from .postprocess.zones import clean_zones
from .zones_window import flip_tta_sliding_window, native_roi, voxel_spacing, window_size


class CenterCropMmd(Cropd):
    """Centred crop of ``roi_mm`` millimetres (RAS axes) of a RAS image; invertible with ``Invertd``."""

    def __init__(self, keys: Any, roi_mm: Sequence[float], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, CenterSpatialCrop(roi_size=1), allow_missing_keys)
        self.roi_mm = tuple(float(v) for v in roi_mm)

    def __call__(self, data: Any, lazy: bool | None = None) -> dict:
        d = dict(data)
        self.cropper.roi_size = native_roi(d[self.first_key(d)].affine, self.roi_mm)
        return super().__call__(d, lazy)


class ZonesInferer(Inferer):
    """Sliding window (Gaussian) with left-right flip TTA, window sized to the image as medcl does."""

    def __init__(self, max_window: Sequence[int], divisor: Sequence[int], sw_batch_size: int = 2,
                 overlap: float = 0.25, tta: bool = True) -> None:
        self.max_window, self.divisor = list(max_window), list(divisor)
        self.sw_batch_size, self.overlap, self.tta = sw_batch_size, overlap, tta

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        window = window_size(inputs.shape[2:], self.max_window, self.divisor)
        return flip_tta_sliding_window(inputs.float(), network, window, self.sw_batch_size, self.overlap, self.tta)


class CleanZonesd(MapTransform):
    """medcl's zone post-processing (largest components, signed-distance gap filling) of a label map."""

    def __init__(self, keys: Any, zones: Sequence[int] = (1, 2, 3, 4)) -> None:
        super().__init__(keys)
        self.zones = tuple(zones)

    def __call__(self, data: Any) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            labels = clean_zones(np.asarray(img[0].cpu().numpy()).round().astype(np.int64),
                                 voxel_spacing(img.affine), self.zones)
            d[key] = MetaTensor(torch.from_numpy(labels[None]), meta=dict(img.meta))
        return d


@torch.inference_mode()
def run(dataset: Any, network: Any, inferer: Inferer, postprocessing: Any, device: Any) -> int:
    """Segment every item of ``dataset`` (``{"image": path}`` -> preprocessing) and post-process it."""
    network.eval()
    for i in range(len(dataset)):
        item = dataset[i]
        image = item["image"]
        out = inferer(image[None].to(device), network)[0].cpu()
        pred = MetaTensor(out, meta=dict(image.meta))
        pred.applied_operations = list(image.applied_operations)
        postprocessing({**item, "pred": pred})
    return len(dataset)
