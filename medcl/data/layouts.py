"""Datalists from public prostate zone data sets as distributed (``medcl data datalist``).

Each layout finds ``(case, image, label)`` triples and declares how its label values map to the
medcl zones (0 background, 1 PZ, 2 TZ, 3 DPU, 4 AFS) and which zones it annotates:

=============  ====================================================  ==========================
layout         files                                                 declared labels
=============  ====================================================  ==========================
nnunet         ``imagesTr/<case>_0000.<ext>``, ``labelsTr/<case>``,   by name from ``labels``
               ``dataset.json`` (nnU-Net v2 raw layout)
msd            ``dataset.json`` ``training`` list (MSD Task05; 4D     by name: 1 PZ, 2 TZ
               T2 + ADC images: pick one with ``--channel``)
prostate158    ``<case>/t2.nii.gz`` + ``<case>/t2_anatomy_reader1``   1 TZ, 2 PZ
picai          ``<patient>/<patient>_<study>_t2w.mha`` + zonal label   1 PZ, 2 TZ
               ``<labels>/<patient>_<study>.nii.gz``
prostatex      ``<case>/`` with a T2 image and per-zone masks         mask_pz 1 PZ, mask_tz 2 TZ
               ``mask_pz``/``mask_tz`` (combined), or an NRRD label   (NRRD: ``--remap``)
folder         ``images/<case>.<ext>`` + ``labels/<case>.<ext>``        0-4 or ``--remap``
=============  ====================================================  ==========================

Every label file is read and checked: values outside the declared set are an error naming the
file and the values; an image grid (size, spacing, origin, direction; the first three axes of a
4D image) that differs from its label's is an error; a 4D image needs ``--channel``. A bad case
is reported and left out; the others are written. Cases are split into ``k`` folds with MONAI
``partition_dataset`` (shuffled with the seed); fold ``f`` is the validation list.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medcl.data.layout_names import LAYOUTS
from medcl.data.zones_labels import LABEL_MAP, ZONE_NAMES
from medcl.errors import MedclError

IMAGE_EXTS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
#: label names of public data sets -> zone value
ZONE_SYNONYMS: dict[str, int] = {
    "background": 0, "bg": 0,
    "pz": 1, "peripheral zone": 1, "peripheral": 1,
    "tz": 2, "transition zone": 2, "transitional zone": 2, "central gland": 2, "cg": 2, "transition": 2,
    "dpu": 3, "urethra": 3, "distal prostatic urethra": 3,
    "afs": 4, "afms": 4, "anterior fibromuscular stroma": 4,
}
PROSTATE158_REMAP: dict[int, int] = {0: 0, 1: LABEL_MAP["TZ"], 2: LABEL_MAP["PZ"]}
PICAI_REMAP: dict[int, int] = {0: 0, 1: LABEL_MAP["PZ"], 2: LABEL_MAP["TZ"]}


@dataclass
class Case:
    """One case found in a layout: its files, declared remap and annotated zones."""

    case: str
    image: Path
    label: Path | None
    remap: dict[int, int]
    masks: dict[int, Path] = field(default_factory=dict)  # per-zone binary masks to combine (prostatex)

    @property
    def zones(self) -> list[str]:
        values = set(self.remap.values()) | set(self.masks)
        return [ZONE_NAMES[v] for v in sorted(values) if v > 0]


def _strip_ext(name: str) -> str:
    for ext in IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTS))


def remap_from_names(labels: Mapping[str, Any], source: Path) -> dict[int, int]:
    """``{value: zone}`` from a ``labels`` table of names (MSD ``{"1": "PZ"}`` or nnU-Net ``{"PZ": 1}``)."""
    table = {}
    for key, value in labels.items():
        value_first = str(key).lstrip("-").isdigit()
        number, name = (int(key), str(value)) if value_first else (int(value), str(key))
        zone = ZONE_SYNONYMS.get(name.strip().lower())
        if zone is None:
            raise MedclError(f"{source}: label {number} {name!r} is not a prostate zone; give --remap")
        table[number] = zone
    return table


def parse_remap(text: str | None) -> dict[int, int] | None:
    """``"1:2,2:1"`` -> ``{0: 0, 1: 2, 2: 1}`` (background kept)."""
    if not text:
        return None
    try:
        pairs = dict(tuple(int(v) for v in item.split(":")) for item in text.split(","))
    except ValueError:
        raise MedclError(f"--remap: expected SOURCE:ZONE pairs like 1:2,2:1, got {text!r}") from None
    bad = sorted(v for v in pairs.values() if not 0 <= v < len(ZONE_NAMES))
    if bad:
        raise MedclError(f"--remap: zone values {bad} are outside 0-{len(ZONE_NAMES) - 1}")
    return {0: 0, **pairs}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MedclError(f"{path}: cannot read ({err})") from None


def _msd_path(root: Path, value: str) -> Path:
    p = root / value.lstrip("/").removeprefix("./")
    if not p.exists() and p.with_name(p.name + ".gz").exists():
        return p.with_name(p.name + ".gz")  # MSD's dataset.json names .nii, the files are .nii.gz
    return p


def find_msd(root: Path, remap: dict[int, int] | None, channel: int | None) -> list[Case]:
    meta = _read_json(root / "dataset.json")
    table = remap or remap_from_names(meta.get("labels", {}), root / "dataset.json")
    return [Case(_strip_ext(Path(item["label"]).name), _msd_path(root, item["image"]), _msd_path(root, item["label"]),
                 table) for item in meta.get("training", [])]


def find_nnunet(root: Path, remap: dict[int, int] | None, channel: int | None) -> list[Case]:
    meta = _read_json(root / "dataset.json")
    ending = meta.get("file_ending", ".nii.gz")
    table = remap or remap_from_names(meta.get("labels", {}), root / "dataset.json")
    suffix = f"_{(channel if isinstance(channel, int) else 0):04d}{ending}"
    cases = []
    for label in sorted((root / "labelsTr").glob(f"*{ending}")):
        case = label.name[: -len(ending)]
        cases.append(Case(case, root / "imagesTr" / f"{case}{suffix}", label, table))
    return cases


def find_prostate158(root: Path, remap: dict[int, int] | None, channel: int | None) -> list[Case]:
    return [Case(d.name, d / "t2.nii.gz", d / "t2_anatomy_reader1.nii.gz", remap or dict(PROSTATE158_REMAP))
            for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "t2.nii.gz").exists())]


def find_picai(root: Path, remap: dict[int, int] | None, channel: int | None, labels: Path | None = None) -> list[Case]:
    if labels is None:
        raise MedclError(f"{root}: the picai layout needs --labels FOLDER (the zonal label NIfTI files)")
    cases = []
    for image in sorted(root.rglob("*_t2w.mha")):
        case = image.name[: -len("_t2w.mha")]
        cases.append(Case(case, image, labels / f"{case}.nii.gz", remap or dict(PICAI_REMAP)))
    return cases


def find_prostatex(root: Path, remap: dict[int, int] | None, channel: int | None) -> list[Case]:
    cases = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = _image_files(d)
        masks = {z: p for p in files for key, z in (("mask_pz", 1), ("mask_tz", 2)) if _strip_ext(p.name) == key}
        nrrd = [p for p in files if p.name.lower().endswith(".nrrd") and p not in masks.values()
                and "seg" in p.name.lower()]
        images = [p for p in files if p not in masks.values() and p not in nrrd]
        if not images:
            continue
        if masks:
            cases.append(Case(d.name, images[0], None, {0: 0, **{z: z for z in masks}}, masks))
        elif nrrd:
            if remap is None:
                raise MedclError(f"{nrrd[0]}: an NRRD zone label map needs --remap (its values are not declared)")
            cases.append(Case(d.name, images[0], nrrd[0], remap))
    return cases


def find_folder(root: Path, remap: dict[int, int] | None, channel: int | None) -> list[Case]:
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise MedclError(f"{root}: the folder layout needs images/ and labels/ sub-folders")
    by_case = {_strip_ext(p.name): p for p in _image_files(labels)}
    table = remap or {i: i for i in range(len(ZONE_NAMES))}
    return [Case(_strip_ext(p.name), p, by_case.get(_strip_ext(p.name), labels / p.name), table)
            for p in _image_files(images)]


FINDERS = {"nnunet": find_nnunet, "msd": find_msd, "prostate158": find_prostate158, "picai": find_picai,
           "prostatex": find_prostatex, "folder": find_folder}


# ----------------------------------------------------------------------------------- checks


def _header(path: Path) -> sitk.ImageFileReader:
    from medcl.io.image import read_header

    return read_header(path)


def _grid(reader: sitk.ImageFileReader) -> tuple[np.ndarray, ...]:
    dim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection()).reshape(dim, dim)[:3, :3]
    return (np.asarray(reader.GetSize()[:3]), np.asarray(reader.GetSpacing()[:3]),
            np.asarray(reader.GetOrigin()[:3]), direction)


def check_channel(path: Path, reader: sitk.ImageFileReader, channel: int | list[int] | None) -> None:
    """A 4D image needs valid ``channel`` index(es); a 3D image takes none (or 0)."""
    channels = reader.GetSize()[3] if reader.GetDimension() == 4 else 1
    if channels > 1 and channel is None:
        raise MedclError(f"{path}: is 4D with {channels} channels; choose one with --channel (0-{channels - 1})")
    for c in channel if isinstance(channel, list) else [channel]:
        if c is not None and not 0 <= c < channels:
            raise MedclError(f"{path}: --channel {c} is out of range; the image has {channels} channel(s)")


def parse_channel(text: str | None) -> int | list[int] | None:
    """``"1"`` -> 1, ``"0,1"`` -> [0, 1] (several channels read as network input channels)."""
    if text is None:
        return None
    try:
        values = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise MedclError(f"--channel: expected an index or indices like 0,1, got {text!r}") from None
    if any(v < 0 for v in values):
        raise MedclError(f"--channel: channels count from 0, got {text!r}")
    return values[0] if len(values) == 1 else values


def check_grids(image: Path, label: Path, image_reader: sitk.ImageFileReader) -> None:
    """Image and label on the same voxel grid (size, spacing, origin, direction; 1e-3 mm tolerance)."""
    a, b = _grid(image_reader), _grid(_header(label))
    names = ("size", "spacing", "origin", "direction")
    for name, x, y in zip(names, a, b):
        if x.shape != y.shape or not np.allclose(x, y, atol=1e-3):
            raise MedclError(f"{label}: label grid {name} {np.round(y, 4).tolist()} differs from image {image} "
                             f"({np.round(x, 4).tolist()})")


def check_label_values(label: Path, remap: Mapping[int, int]) -> None:
    """Every label value is declared by the layout's remap, and some voxel is a zone (not background):
    an all-background label (an empty export, the wrong file) would teach that the gland is absent."""
    image = sitk.ReadImage(str(label))  # keep a reference: the array view does not own the voxels
    values = set(np.unique(sitk.GetArrayViewFromImage(image)).tolist())
    bad = sorted(v for v in values if v not in remap)
    if bad:
        raise MedclError(f"{label}: label values {bad[:10]} outside the declared set {sorted(remap)}")
    if all(remap[v] == 0 for v in values):
        raise MedclError(f"{label}: label is all background (values {sorted(values)}); no zone is annotated")


def _item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    label = item.get("label")
    return os.path.realpath(item["image"]), os.path.realpath(label) if label is not None else ""


def check_repeats(datalist: str | os.PathLike, key: str, items: Sequence[Mapping[str, Any]]) -> None:
    """No (image, label) pair twice in a list, and no validation image that is also a training image.

    The same image with another label (a second reader's annotation) is allowed in training.

    Raises:
        MedclError: naming the datalist, the list, the items and the image.
    """
    first: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        pair = _item_key(item)
        if pair in first:
            raise MedclError(f"{datalist}: {key}[{i}] repeats {key}[{first[pair]}] ({item['image']}); "
                             "list each pair once")
        first[pair] = i
    if key != "validation" or not items:
        return
    from medcl.data.datalist import read_datalist

    training = {_item_key(item)[0]: i for i, item in enumerate(read_datalist(datalist, "training", optional=True))}
    for i, item in enumerate(items):
        j = training.get(_item_key(item)[0])
        if j is not None:
            raise MedclError(f"{datalist}: validation[{i}] is training[{j}] ({item['image']}); a case used for "
                             "training cannot validate it")


def validate_items(datalist: str | os.PathLike, key: str, items: Sequence[Mapping[str, Any]],
                   remap: str | Mapping[int, int] = "identity", channel: int | list[int] | None = None) -> None:
    """Check every ``{"image", "label"}`` pair of a datalist list before training starts.

    Each image must be readable with a usable spacing and not (near-)constant; each label on its
    image's grid with values in the declared set (the item's ``zone_remap``, else ``remap``).

    Raises:
        MedclError: naming the file (and the datalist list) and the problem.
    """
    from medcl.data.zones_labels import resolve_remap
    from medcl.io.image import check_not_constant

    if key == "training" and not items:
        raise MedclError(f"{datalist}: {key}: the list is empty; nothing to train on")
    check_repeats(datalist, key, items)
    from medcl.io.image import read_sitk_image

    for item in items:
        image = Path(item["image"])
        if image.is_dir():  # a DICOM series: read (and checked) whole
            check_not_constant(sitk.GetArrayViewFromImage(read_sitk_image(image)[0]), image)
            continue
        reader = _header(image)
        check_channel(image, reader, item.get("channel", channel))
        voxels = sitk.ReadImage(str(image))  # keep a reference: the array view does not own the voxels
        check_not_constant(sitk.GetArrayViewFromImage(voxels), image)
        if item.get("label") is None:
            continue
        check_grids(image, Path(item["label"]), reader)
        own = item.get("zone_remap")
        check_label_values(Path(item["label"]), {int(k): v for k, v in own.items()} if own else resolve_remap(remap))


def combine_masks(case: Case, out: Path) -> Path:
    """One zone label map from per-zone binary masks (PROSTATEx ``mask_pz``/``mask_tz``); overlap is an error."""
    combined = None
    for zone, mask_path in sorted(case.masks.items()):
        check_grids(case.image, mask_path, _header(case.image))
        mask = sitk.ReadImage(str(mask_path))
        values = set(np.unique(sitk.GetArrayViewFromImage(mask)).tolist())
        if not values <= {0, 1}:
            raise MedclError(f"{mask_path}: mask values {sorted(values)[:10]} outside the declared set [0, 1]")
        arr = (sitk.GetArrayFromImage(mask) > 0).astype(np.uint8)
        if combined is None:
            combined, ref = np.zeros_like(arr), mask
        if (combined[arr > 0] > 0).any():
            raise MedclError(f"{mask_path}: overlaps another zone mask of {case.case}")
        combined[arr > 0] = zone
    image = sitk.GetImageFromArray(combined)
    image.CopyInformation(ref)
    path = out / "labels" / f"{case.case}.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def check_case(case: Case, channel: int | None, out: Path) -> dict[str, Any]:
    """Validate one case and return its datalist item (raises :class:`MedclError`)."""
    reader = _header(case.image)
    check_channel(case.image, reader, channel)
    label = combine_masks(case, out) if case.masks else case.label
    if label is None:
        raise MedclError(f"{case.image}: no label found for case {case.case}")
    check_grids(case.image, label, reader)
    check_label_values(label, case.remap)
    item: dict[str, Any] = {"case": case.case, "image": str(case.image), "label": str(label),
                            "zone_remap": {str(k): v for k, v in case.remap.items()}, "zones": case.zones}
    if reader.GetDimension() == 4 and reader.GetSize()[3] > 1:
        item["channel"] = channel
    return item


# ----------------------------------------------------------------------------------- datalist


def build_datalist(
    root: str | os.PathLike,
    layout: str,
    out: str | os.PathLike,
    folds: int = 5,
    fold: int = 0,
    seed: int = 0,
    remap: str | None = None,
    channel: int | list[int] | None = None,
    labels: str | os.PathLike | None = None,
    name: str | None = None,
) -> tuple[Path, list[str]]:
    """Write ``out`` (a datalist JSON) from a data set folder; returns it and the error lines.

    Raises:
        MedclError: unknown layout, bad fold settings, no usable case at all.
    """
    from monai.data import partition_dataset

    from medcl.data.datalist import write_datalist

    root = Path(root)
    if layout not in LAYOUTS:
        raise MedclError(f"--layout: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise MedclError(f"{root}: not a folder")
    out = Path(out)
    table = parse_remap(remap)
    finder = FINDERS[layout]
    cases = finder(root, table, channel, Path(labels) if labels else None) if layout == "picai" else finder(
        root, table, channel)
    items, errors = [], []
    for case in cases:
        try:
            items.append(check_case(case, channel, out.parent))
        except MedclError as exc:
            errors.append(str(exc))
            print(f"medcl: error: {exc}", file=sys.stderr)
    if not items:
        raise MedclError(f"{root}: no usable {layout} case found" + (f" ({len(errors)} failed)" if errors else ""))
    if not 1 <= folds <= len(items) or not 0 <= fold < folds:
        raise MedclError(f"--folds/--fold: need 1 <= folds <= {len(items)} cases and 0 <= fold < folds, "
                         f"got {folds}/{fold}")
    parts = partition_dataset(items, num_partitions=folds, shuffle=True, seed=seed) if folds > 1 else [items]
    for k, part in enumerate(parts):
        for item in part:
            item["fold"] = k
    validation = parts[fold] if folds > 1 else []
    training = [item for k, part in enumerate(parts) for item in part if folds == 1 or k != fold]
    write_datalist(out, {"training": training, "validation": validation}, name=name or f"{layout}:{root.name}",
                   layout=layout, source=str(root.resolve()), synthetic=False, folds=folds, fold=fold, seed=seed,
                   numTraining=len(training), numValidation=len(validation), errors=errors)
    return out, errors
