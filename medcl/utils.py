"""Small helpers shared by every family: atomic outputs, JSON, thread settings, progress bars."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


TEMP_PREFIX = ".medcl-tmp-"
"""Name prefix of every temporary file medcl writes (``.medcl-tmp-<pid>-<random>-<name>``).

A run killed mid-write (SIGKILL, power loss) leaves such a file behind; :func:`sweep_temp_files`
removes those of dead processes, and every writer calls it once per folder it writes into.
"""
_SWEPT: set[str] = set()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.medcl-tmp-*`` files (and folders) in ``folder`` left by processes that no longer run."""
    import shutil

    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return removed
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        pid = entry.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    key = str(folder.resolve())
    if key not in _SWEPT:
        _SWEPT.add(key)
        sweep_temp_files(folder)


def temp_name(final: str | os.PathLike, suffix: str | None = None) -> Path:
    """A fresh temporary path beside ``final`` (``.medcl-tmp-<pid>-<random>-<name>``, keeping its suffix)."""
    import secrets

    final = Path(final)
    return final.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{final.name}"
                           + (suffix if suffix and not final.name.endswith(suffix) else ""))


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    The temporary name (:func:`temp_name`) keeps the final suffix (``.nii.gz``, ``.png`` ...) so
    that writers which look at the extension behave. On error the temporary file is removed and
    ``path`` is untouched; temporary files of killed runs in the same folder are swept first.
    """
    final = Path(path)
    make_output_dir(final.parent)
    _sweep_once(final.parent)
    tmp_path = temp_name(final, suffix)
    tmp_path.touch(mode=0o600)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())  # outputs follow the umask
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def make_output_dir(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``; a path below a file or an unwritable place is a one-line :class:`MedclError`.

    Inside :func:`output_lock`, the command's output folder is locked as soon as it exists."""
    from medcl.errors import MedclError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        above = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise MedclError(f"{folder}: cannot create the output folder: {above} is a file") from None
    except OSError as err:
        raise MedclError(f"{folder}: cannot create the output folder ({err.strerror or err})") from None
    if _LOCK["target"] is not None and _LOCK["fd"] is None and os.path.realpath(folder) == _LOCK["target"]:
        _lock(folder)
    return folder


_LOCK: dict[str, Any] = {"target": None, "fd": None, "shown": None}


def _lock(folder: str | os.PathLike) -> None:
    """Take an exclusive ``flock`` on the folder itself (no lock file to leave behind); the kernel drops it
    when the process ends, killed or not."""
    import fcntl

    from medcl.errors import MedclError

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MedclError(f"{_LOCK['shown']}: another medcl run is writing into this output folder; wait for it "
                         "to finish or choose another --out") from None
    except OSError:  # a file system without flock (some network mounts): no lock
        os.close(fd)
        return
    _LOCK["fd"] = fd


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike | None) -> Iterator[None]:
    """Within the block (one ``medcl`` command), ``folder`` is written by this process only: a second
    medcl process whose command writes into the same folder is refused with a one-line error.

    The lock is taken now if the folder exists, else when medcl creates it. Distributed ranks other than
    0 (``RANK``/``LOCAL_RANK`` set above 0) share rank 0's folder and take no lock.
    """
    ranks = [os.environ.get(k, "0") for k in ("RANK", "LOCAL_RANK")]
    if folder is None or any(r.isdigit() and int(r) > 0 for r in ranks) or _LOCK["target"] is not None:
        yield
        return
    _LOCK.update(target=os.path.realpath(folder), fd=None, shown=str(folder))
    try:
        if Path(folder).is_dir():
            _lock(folder)
        yield
    finally:
        if _LOCK["fd"] is not None:
            os.close(_LOCK["fd"])
        _LOCK.update(target=None, fd=None, shown=None)


def check_writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and prove it writable (a probe file is created and removed), before work starts."""
    from medcl.errors import MedclError

    folder = make_output_dir(folder)
    probe = temp_name(folder / "write-probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise MedclError(f"{folder}: output folder is not writable ({err.strerror or err})") from None
    _sweep_once(folder)
    return folder


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
    """Create ``out_dir`` (writable, or a one-line error); refuse a folder that is one of the inputs' own folders."""
    from medcl.errors import MedclError

    out = Path(out_dir).resolve()
    for item in inputs:
        p = Path(item).resolve()
        parent = p if p.is_dir() else p.parent
        if out == parent:
            raise MedclError(f"{out_dir}: output folder is the input folder of {item}; choose another")
    return check_writable_dir(out)


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` made unique by construction: a repeated name gets the first free ``_2``, ``_3``...

    Free means used by no other entry, given or generated, so ``["s", "s", "s_2"]`` becomes
    ``["s", "s_3", "s_2"]`` (never two outputs with one name).
    """
    names = list(names)
    taken = set(names)
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            k = 2
            while f"{name}_{k}" in taken:
                k += 1
            name = f"{name}_{k}"
            taken.add(name)
        seen.add(name)
        out.append(name)
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


# ----------------------------------------------------------------------------------------- option types
# argparse ``type=`` callables: a bad value is argparse's one-line error naming the option.


def _number(text: str, kind: type) -> float:
    import argparse
    import math

    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    import argparse

    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    import argparse

    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    import argparse

    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def unit_interval(text: str) -> float:
    """A number in [0, 1) (e.g. a sliding-window overlap)."""
    import argparse

    value = float(_number(text, float))
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


# ----------------------------------------------------------------------------------------- portable configs

PATH_KEYS = ("root", "datalist", "manifest")
"""Config keys holding data paths: a checkpoint stores them relative (to the working folder), never absolute."""
MACHINE_KEYS = ("cache_dir",)
"""Config keys that only mean something on the machine that trained: a checkpoint stores none of them."""


def portable_config(config: Any) -> Any:
    """``config`` (a plain dict tree) with :data:`PATH_KEYS` made relative and :data:`MACHINE_KEYS` cleared,
    so that a checkpoint names no absolute path of the machine that wrote it."""
    if isinstance(config, list):
        return [portable_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        if key in MACHINE_KEYS:
            value = None
        elif key in PATH_KEYS and isinstance(value, str) and os.path.isabs(value):
            try:
                value = os.path.relpath(value)
            except ValueError:  # another drive (Windows)
                value = Path(value).name
        else:
            value = portable_config(value)
        out[key] = value
    return out


def shown_path(path: str | os.PathLike) -> str:
    """How outputs name an input file: as given when relative, relative to the working folder when below it,
    else its name alone (outputs never carry an absolute path of this machine)."""
    p = Path(str(path))
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return p.name


def shown_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """:func:`shown_path` of each input, unique by construction (:func:`unique_names`): two records named ``s``
    in different folders outside the working folder become ``s`` and ``s_2``, never one ambiguous name."""
    return unique_names(shown_path(p) for p in paths)
