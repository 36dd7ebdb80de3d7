"""A MONAI bundle of a zones network that reproduces ``medcl zones segment`` with MONAI's own runner.

Layout (MONAI bundle specification)::

    configs/metadata.json   model card (medcl's card under "medcl"), versions, label names
    configs/inference.json  LoadImaged -> RAS -> 1-99 percentile scaling -> centred ROI in mm ->
                            Spacingd -> sliding window with flip TTA -> Invertd onto the input
                            grid -> argmax -> medcl's zone post-processing -> SaveImaged
    models/model.ts         TorchScript: both paths and their fusion, 5 zone probabilities out
    scripts/                the ROI crop, inferer and post-processing MONAI has no transform for,
                            copied from medcl's own modules (no medcl import at run time)
    docs/README.md          how to run it (monai.bundle, MONAI Label / 3D Slicer)

Run: ``python -m monai.bundle run --config_file B/configs/inference.json --bundle_root B
--dataset_dir IN --output_dir OUT`` writes ``OUT/<case>_zones.nii.gz`` per ``IN/*.nii[.gz]``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medcl.inferers.zones_window import DEFAULT_MAX_WINDOW, DEFAULT_ROI_MM
from medcl.postprocess.volumes import ZONE_NAMES
from medcl.utils import atomic_write_path, write_json

POSTPROCESS_MODULES = ("components", "gapfill", "zones")
DEFAULT_PIXDIM = (0.5, 0.5, 3.0)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import monai
    import numpy

    return {"monai_version": monai.__version__, "pytorch_version": torch.__version__.split("+")[0],
            "numpy_version": numpy.__version__,
            "required_packages_version": {p: version(p) for p in ("nibabel", "scipy")}}


def inference_config(card: dict[str, Any], divisor: list[int]) -> dict[str, Any]:
    """The bundle's ``configs/inference.json``: medcl's segmentation recipe as MONAI components."""
    pixdim = list((card.get("config", {}).get("data") or {}).get("pixdim") or DEFAULT_PIXDIM)
    return {
        "imports": ["$import glob", "$import os", "$import sys", "$import numpy", "$import torch"],
        "bundle_root": ".",
        "dataset_dir": "data",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "roi_mm": list(DEFAULT_ROI_MM),
        "pixdim": pixdim,
        "max_window": list(DEFAULT_MAX_WINDOW),
        "divisor": list(divisor),
        "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.nii.gz')) + "
                    "glob.glob(os.path.join(@dataset_dir, '*.nii')))",
        "network_def": "$torch.jit.load(os.path.join(@bundle_root, 'models', 'model.ts'), map_location=@device)",
        "network": "$@network_def.eval()",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS", "labels": None},
            {"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 1.0, "upper": 99.0,
             "b_min": 0.0, "b_max": 1.0, "clip": True},
            {"_target_": "scripts.zones_bundle.CenterCropMmd", "keys": "image", "roi_mm": "@roi_mm"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": "@pixdim", "mode": "bilinear"},
        ]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]",
                    "transform": "@preprocessing"},
        "inferer": {"_target_": "scripts.zones_bundle.ZonesInferer", "max_window": "@max_window",
                    "divisor": "@divisor", "sw_batch_size": 2, "overlap": 0.25, "tta": True},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "scripts.zones_bundle.CleanZonesd", "keys": "pred", "zones": sorted(ZONE_NAMES)},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "zones",
             "output_ext": ".nii.gz", "output_dtype": "$numpy.uint8", "resample": False,
             "separate_folder": False, "print_log": False},
        ]},
        "segment": {"_target_": "scripts.zones_bundle.run", "dataset": "@dataset", "network": "@network",
                    "inferer": "@inferer", "postprocessing": "@postprocessing", "device": "@device"},
        "initialize": ["$sys.path.insert(0, os.path.abspath(@bundle_root))", "$os.makedirs(@output_dir, exist_ok=True)"],
        "run": ["$@segment"],
    }


def metadata(card: dict[str, Any], divisor: list[int]) -> dict[str, Any]:
    """The bundle's ``configs/metadata.json``: versions, data formats, label names and medcl's card."""
    names = {"0": "background", **{str(k): v for k, v in ZONE_NAMES.items()}}
    patch = [f"{d}*n" for d in divisor]
    return {
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by medcl {card.get('versions', {}).get('medcl', '')} from {card.get('source')}"},
        **_versions(),
        "name": "medcl prostate zones (dual-path)",
        "task": "Prostate zone segmentation (PZ, TZ, DPU, AFS) on T2-weighted MRI",
        "description": "Dual-path anisotropic 3D U-Net with path fusion (Meyer et al., ISBI 2019), exported "
                       "by medcl; reproduces `medcl zones segment` (RAS, 0.5x0.5x3 mm, centred ROI, flip TTA, "
                       "inversion to the input grid, largest components and gap filling).",
        "authors": "medcl",
        "copyright": "see the training data's licence",
        "data_source": card.get("training_data", "unknown"),
        "data_type": "nifti",
        "intended_use": _intended_use(card),
        "image_classes": "single-channel T2w MRI, any orientation and spacing",
        "label_classes": names,
        "pred_classes": names,
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
                                 "spatial_shape": patch, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": {"0": "T2w"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 5,
                                 "spatial_shape": patch, "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": names}},
        },
        "medcl": card,
    }


def _intended_use(card: dict[str, Any]) -> str:
    if "synthetic" in str(card.get("training_data", "")).lower():
        return "demonstration only: trained on SYNTHETIC data, not for research or clinical use"
    return "research use only, not for clinical decisions"


def readme(card: dict[str, Any]) -> str:
    """``docs/README.md``: model card and how to run the bundle."""
    return f"""# medcl prostate zones bundle

{_intended_use(card).capitalize()}.

- Training data: {card.get("training_data", "unknown")}
- Exported from: `{card.get("source")}` (medcl {card.get("versions", {}).get("medcl", "?")})
- Labels: 0 background, 1 PZ (peripheral zone), 2 TZ (transition zone), 3 DPU (distal prostatic
  urethra), 4 AFS (anterior fibromuscular stroma)

## Run with MONAI

```bash
python -m monai.bundle run --config_file configs/inference.json --bundle_root . \\
    --dataset_dir /path/to/nifti --output_dir /path/to/out
```

Every `*.nii` / `*.nii.gz` in `dataset_dir` gives `<case>_zones.nii.gz` on the input grid. The
recipe is that of `medcl zones segment`: reorient to RAS, scale to the 1st-99th percentile, crop an
80 x 80 x 120 mm box at the centre of the field of view, resample to the training spacing, sliding
window with left-right flip averaging, invert onto the input grid (`Invertd`), argmax, keep each
zone's largest component and fill gaps inside the gland (`scripts/`). `models/model.ts` holds both
network paths and their fusion; it maps a `(B, 1, X, Y, Z)` patch (sizes multiples of the
`divisor` in `configs/inference.json`) to 5 zone probabilities.

## MONAI Label / 3D Slicer

Copy this folder into a MONAI Label app's `model/` folder (e.g. the `monaibundle` sample app) and
start `monailabel start_server --app <app> --studies <images> --conf models <this folder's name>`;
3D Slicer's MONAI Label module then runs it on the loaded volume.
"""


def write_bundle(net: nn.Module, card: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write the bundle of a zones network into ``out_dir``; returns ``out_dir/configs/inference.json``."""
    from medcl.export.onnx import ZonesPatchModel, file_sha256

    out = Path(out_dir)
    for sub in ("configs", "models", "docs", "scripts/postprocess"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    divisor = list(net.spec.divisor)
    example = torch.rand(1, 1, *(2 * d for d in divisor))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
        traced = torch.jit.trace(ZonesPatchModel(net.eval().cpu(), uncertainty=False), example, check_trace=False)
    with atomic_write_path(out / "models" / "model.ts") as tmp:
        torch.jit.save(traced, str(tmp))
    _copy_scripts(out / "scripts")
    card = {**card, "model_ts_sha256": file_sha256(out / "models" / "model.ts")}
    write_json(out / "configs" / "inference.json", inference_config(card, divisor))
    write_json(out / "configs" / "metadata.json", metadata(card, divisor))
    (out / "docs" / "README.md").write_text(readme(card))
    return out / "configs" / "inference.json"


def _copy_scripts(dest: Path) -> None:
    """The bundle's ``scripts`` package: the template, ``zones_window`` and medcl's post-processing."""
    import medcl.inferers.zones_window as zones_window

    template = resources.files("medcl.export").joinpath("bundle_template", "scripts", "zones_bundle.py")
    (dest / "zones_bundle.py").write_text(template.read_text())
    shutil.copyfile(zones_window.__file__, dest / "zones_window.py")
    (dest / "__init__.py").write_text('"""medcl zones bundle scripts (copied from medcl at export)."""\n')
    (dest / "postprocess" / "__init__.py").write_text("")
    for name in POSTPROCESS_MODULES:
        source = resources.files("medcl.postprocess").joinpath(f"{name}.py").read_text()
        (dest / "postprocess" / f"{name}.py").write_text(source.replace("from medcl.postprocess.", "from ."))



def read_bundle_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """A medcl zones bundle's ``configs/metadata.json``, after checking ``models/model.ts`` against its SHA-256.

    Raises:
        MedclError: not a medcl bundle, or a model file that was edited or damaged.
    """
    import json

    from medcl.errors import MedclError
    from medcl.export.onnx import file_sha256

    root = Path(path)
    meta_path, model = root / "configs" / "metadata.json", root / "models" / "model.ts"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise MedclError(f"{meta_path}: not a readable bundle metadata file ({exc})") from None
    card = meta.get("medcl") if isinstance(meta, dict) else None
    if not isinstance(card, dict) or not model.is_file():
        raise MedclError(f"{root}: not a medcl bundle (no medcl card or no models/model.ts)")
    if file_sha256(model) != card.get("model_ts_sha256"):
        raise MedclError(f"{model}: does not match its recorded SHA-256 (file edited or damaged)")
    return meta
