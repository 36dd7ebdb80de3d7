"""Small helpers shared by every family: atomic outputs, JSON, thread settings, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary file keeps the final suffix (``.nii.gz``, ``.png`` ...) so that writers which
    look at the extension behave. On error the temporary file is removed and ``path`` is untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    name = final.name
    suffix = suffix if suffix is not None else "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs follow the umask
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_write_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_write_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def ensure_output_dir(out_dir: str | os.PathLike, inputs: list[str | os.PathLike] = ()) -> Path:
    """Create ``out_dir``; refuse a folder that is (or holds) one of the inputs' own folders."""
    from medcl.errors import MedclError

    out = Path(out_dir).resolve()
    for item in inputs:
        p = Path(item).resolve()
        parent = p if p.is_dir() else p.parent
        if out == parent:
            raise MedclError(f"{out_dir}: output folder is the input folder of {item}; choose another")
    out.mkdir(parents=True, exist_ok=True)
    return out


def progress_bar(items: Iterable[T], desc: str, total: int | None = None, enable: bool | None = None) -> Iterable[T]:
    """``items`` wrapped in a tqdm bar on stderr; quiet (no output) unless stderr is a terminal.

    ``enable=True``/``False`` forces it on/off; ``MEDCL_PROGRESS=0``/``1`` does the same globally.
    """
    import sys

    env = os.environ.get("MEDCL_PROGRESS")
    if enable is None:
        enable = env == "1" if env in ("0", "1") else sys.stderr.isatty()
    if not enable:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, unit="item", leave=False, file=sys.stderr, dynamic_ncols=True)
