"""MONAI dataset caching keyed by the transform chain, so a changed chain never reuses a stale cache.

MONAI's ``PersistentDataset`` names cache files by a hash of the data item only (plus, optionally,
``hash_transform`` of the deterministic transforms, whose stock JSON hashing falls back to class
names when the transforms hold non-JSON values). Here the deterministic prefix of the chain is
described recursively (class names and every attribute value), hashed, and used both as
``hash_transform`` and, with the file list, as the name of the cache folder.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, RandomizableTrait, Transform
from monai.utils import TraceKeys

from medcl.errors import MedclError
from medcl.utils import write_json

__all__ = ["cache_key", "cached_dataset", "chain_hash", "describe", "deterministic_prefix"]

_MAX_DEPTH = 12
_PRIMITIVES = (str, int, float, bool, type(None))
# Run-time state that is not configuration: random states and lazily created thread-locals.
_VOLATILE = (np.random.RandomState, np.random.Generator, torch.Generator, threading.local)
_NUMPY_DTYPES = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)
# MONAI's applied_operations hold TraceKeys and small numpy arrays: plain data, allowed for cache loads.
_CACHE_SAFE_GLOBALS = [
    TraceKeys,
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    *(type(np.dtype(t)) for t in _NUMPY_DTYPES),
]


class _SafeLoadPersistentDataset(PersistentDataset):
    """``PersistentDataset`` whose ``weights_only`` loads also accept MONAI's transform traces."""

    def _cachecheck(self, item_transformed: Any) -> Any:
        with torch.serialization.safe_globals(_CACHE_SAFE_GLOBALS):
            return super()._cachecheck(item_transformed)


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '')}.{getattr(kind, '__qualname__', type(kind).__name__)}"


def _describe_array(value: np.ndarray | torch.Tensor) -> Any:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if array.size <= 64:
        return array.tolist()
    return {"shape": list(array.shape), "sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}


def describe(obj: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A deterministic, JSON-serialisable description of a transform (class and attribute values).

    Memory addresses, random states and thread-local run-time state are left out so that equal
    chains describe identically in any process, before or after use; any changed parameter
    changes the description.
    """
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, _PRIMITIVES):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _describe_array(obj)
    if id(obj) in _seen or _depth > _MAX_DEPTH:
        return f"<{_qualname(obj)}>"
    seen, depth = _seen | {id(obj)}, _depth + 1
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [describe(v, depth, seen) for v in obj]
        return sorted(items, key=repr) if isinstance(obj, (set, frozenset)) else items
    if isinstance(obj, dict):
        return {str(k): describe(v, depth, seen) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (type, torch.dtype, np.dtype, os.PathLike)) or not hasattr(obj, "__dict__"):
        return str(obj) if isinstance(obj, (torch.dtype, np.dtype, os.PathLike)) else _qualname(obj)
    attrs = {k: v for k, v in vars(obj).items() if not isinstance(v, _VOLATILE)}
    return {"class": _qualname(obj), "attrs": describe(attrs, depth, seen)}


def deterministic_prefix(transform: Callable | Sequence[Callable]) -> list[Callable]:
    """The transforms before the first random (or non-MONAI) one: the part whose output is cached."""
    chain = transform if isinstance(transform, Compose) else Compose(transform)
    prefix = []
    for item in chain.flatten().transforms:
        if isinstance(item, RandomizableTrait) or not isinstance(item, Transform):
            break
        prefix.append(item)
    return prefix


def chain_hash(transforms: Sequence[Callable]) -> bytes:
    """SHA-256 of the description of ``transforms``; MONAI ``hash_transform`` callable."""
    text = json.dumps(describe(list(transforms)), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("utf-8")


def _path_to_str(value: Any) -> str:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def cache_key(data: Sequence[Any], transform: Callable | Sequence[Callable]) -> str:
    """Short key of (deterministic part of the chain, data list): the cache folder name."""
    files = json.dumps(list(data), sort_keys=True, default=_path_to_str)
    digest = hashlib.sha256(chain_hash(deterministic_prefix(transform)) + files.encode("utf-8"))
    return digest.hexdigest()[:20]


def cached_dataset(
    data: Sequence[Any],
    transform: Callable | Sequence[Callable],
    cache_root: str | os.PathLike | None = None,
    cache_rate: float = 1.0,
    num_workers: int = 0,
) -> Dataset:
    """A MONAI dataset whose deterministic transforms run once.

    Args:
        data: items (e.g. ``{"image": path, "label": path}``); must be JSON-serialisable.
        transform: the full chain; random transforms after the deterministic prefix run every time.
        cache_root: folder for an on-disk ``PersistentDataset``; the cache lives in
            ``cache_root/<cache_key>``. ``None`` caches in memory with ``CacheDataset``.
        cache_rate: fraction of items cached in memory (``CacheDataset`` only).
        num_workers: threads filling the in-memory cache.
    """
    if cache_root is None:
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers, progress=False)
    try:
        key = cache_key(data, transform)
    except TypeError as err:
        raise MedclError(f"{cache_root}: dataset items must be JSON-serialisable to key the cache ({err})") from None
    folder = Path(cache_root) / key
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "cache_key.json").exists():
        description = describe(deterministic_prefix(transform))
        write_json(folder / "cache_key.json", {"key": key, "n_items": len(data), "transforms": description})
    return _SafeLoadPersistentDataset(
        data, transform, cache_dir=folder, hash_transform=chain_hash, track_meta=True
    )
