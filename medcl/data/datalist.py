"""MSD-style datalist JSON files (``training`` / ``validation`` / ``unlabeled`` lists).

A datalist is the Medical Segmentation Decathlon ``dataset.json`` layout read by MONAI's
``load_decathlon_datalist``: each list holds ``{"image": path, "label": path}`` items (``label``
absent for unlabeled scans); relative paths are relative to the datalist's folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from medcl.errors import MedclError
from medcl.utils import write_json

#: item keys that hold file paths (stored relative to the datalist's folder when below it)
PATH_KEYS: tuple[str, ...] = ("image", "label")


def read_datalist(
    path: str | os.PathLike, key: str, required_keys: Sequence[str] = ("image",), optional: bool = False
) -> list[dict[str, Any]]:
    """Read one list of a datalist with absolute paths, checking that every file exists.

    Args:
        path: the datalist JSON file.
        key: the list to read (``"training"``, ``"validation"``, ``"unlabeled"``...).
        required_keys: keys each item must have; their files must exist.
        optional: return ``[]`` instead of raising when ``key`` is absent.

    Raises:
        MedclError: unreadable file, missing list, item without a key, or a missing file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MedclError(f"{path}: cannot read the datalist ({err})") from None
    if key not in data:
        if optional:
            return []
        raise MedclError(f"{path}: {key}: list is missing from the datalist")
    if not isinstance(data[key], list):
        raise MedclError(f"{path}: {key}: expected a list of items")
    items = load_decathlon_datalist(path, is_segmentation=True, data_list_key=key)
    for i, item in enumerate(items):
        for k in required_keys:
            if k not in item:
                raise MedclError(f"{path}: {key}[{i}]: item has no {k!r}")
            if not Path(item[k]).exists():
                raise MedclError(f"{path}: {key}[{i}].{k}: file {item[k]} does not exist")
    return items


def write_datalist(path: str | os.PathLike, lists: dict[str, list[dict[str, Any]]], **metadata: Any) -> Path:
    """Write a datalist atomically, storing paths relative to its folder when they lie below it."""
    path = Path(path)
    root = path.parent.resolve()

    def rel(value: Any) -> Any:
        p = Path(value).resolve()
        return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)

    body = {
        k: [{key: rel(v) if key in PATH_KEYS else v for key, v in item.items()} for item in items]
        for k, items in lists.items()
    }
    return write_json(path, {**metadata, **body})
