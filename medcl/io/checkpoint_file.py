"""Reading checkpoint files without ever running code from them.

``torch.load(weights_only=True)`` refuses pickled code, but its message tells the user that
turning the protection off "will likely succeed". Here a refusal is one medcl line that names the
file and the code it holds, e.g. ``run.ckpt: refused: contains code (posix.system)``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from medcl.errors import MedclError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_LIGHTNING_KEYS = ("state_dict", "optimizer_states", "loops")


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; every failure is one :class:`MedclError` line.

    Raises:
        MedclError: missing file, a file holding code (``refused: contains code (module.name)``),
            or a truncated/corrupt/foreign file.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MedclError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise MedclError(f"{path}: refused: contains code ({found.group(1)}); medcl never runs code from a "
                             f"{what}") from None
        raise MedclError(f"{path}: not a loadable {what} (not a PyTorch file, or corrupt)") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, ...
        raise MedclError(f"{path}: not a loadable {what} ({_first_line(exc)})") from None


def check_resume_checkpoint(path: str | os.PathLike) -> Path:
    """A ``--resume`` file must be a safe Lightning training checkpoint (weights, optimiser and loop state)."""
    raw = safe_torch_load(path, "checkpoint to resume from")
    if not isinstance(raw, dict) or not all(k in raw for k in _LIGHTNING_KEYS):
        raise MedclError(f"{path}: not a training checkpoint to resume from (no optimiser/loop state); "
                         "resume from <run>/checkpoints/last.ckpt")
    return Path(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
