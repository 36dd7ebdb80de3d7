"""The model card shown on every ECG report: what the model was trained on and how well it did.

Read from the checkpoint's ``extra["model_card"]`` (written by ``medcl ecg train``); a checkpoint
without one gets honest fallbacks ("not recorded in the checkpoint") and a warning banner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INTENDED_USE_MODEL = "Research and education on 12-lead ECG classification; not a medical device."
SYNTHETIC_BANNER = (
    "This model was trained on synthetic ECGs only. Its findings on a real patient's ECG are not "
    "validated and must not be read as a diagnosis."
)
UNKNOWN_BANNER = (
    "The checkpoint does not record what the model was trained on or how it was validated; "
    "treat its findings as unvalidated."
)
UNKNOWN = "not recorded in the checkpoint"


def model_card(extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The report's view of a checkpoint's model card (``extra["model_card"]``, the schema of
    :mod:`medcl.engine.model_card`).

    Returns:
        ``{"training_data", "dataset", "synthetic" (True/False/None), "n_train", "validation_macro_auroc",
        "n_validation", "date", "intended_use", "banner" (str or None), "recorded" (bool)}``.
    """
    card = dict((extra or {}).get("model_card") or {})
    sets = card.get("training_data") if isinstance(card.get("training_data"), list) else []
    synthetic = bool(card["synthetic_only"]) if "synthetic_only" in card else None
    banner = SYNTHETIC_BANNER if synthetic is True else (UNKNOWN_BANNER if synthetic is None else None)
    described = card.get("description") or "; ".join(
        f"{d.get('name')}: {d.get('cases')} records ({'synthetic' if d.get('synthetic') else 'real'})" for d in sets
    )
    return {
        "training_data": described or UNKNOWN,
        "dataset": ", ".join(str(d.get("name")) for d in sets) or "training set",
        "synthetic": synthetic,
        "n_train": card.get("n_training_cases"),
        "validation_macro_auroc": (card.get("validation") or {}).get("macro_auroc"),
        "n_validation": card.get("n_validation_cases"),
        "date": card.get("date", UNKNOWN),
        "intended_use": card.get("intended_use", INTENDED_USE_MODEL),
        "banner": banner,
        "recorded": bool(card),
    }
