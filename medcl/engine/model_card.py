"""Model cards: what a checkpoint was trained on, how it validated, and what it is for.

A short, machine-readable card in the spirit of Mitchell et al., "Model Cards for Model
Reporting" (FAT* 2019), stored in every checkpoint's ``medcl`` entry under ``extra["model_card"]``
and shown by ``medcl info CHECKPOINT``. Family-agnostic: each family passes its training data
summary (:func:`dataset_summary`) and intended use. A model trained on synthetic data only is
flagged (:func:`synthetic_warning`) so that everything it writes can say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["SYNTHETIC_ONLY", "dataset_summary", "format_card", "model_card", "synthetic_warning"]

SYNTHETIC_ONLY = ("WARNING: model trained on synthetic data only; outputs on real scans are not validated "
                  "and not for clinical use")


def dataset_summary(
    items: Iterable[Mapping[str, Any]],
    default_name: str,
    default_synthetic: bool,
    annotated: Callable[[Mapping[str, Any]], Iterable[str]] | None = None,
) -> list[dict[str, Any]]:
    """Training data by data set: ``name``, ``cases``, ``annotated`` (label names), ``synthetic``.

    Items may carry their own ``dataset`` and ``synthetic`` keys (mixed datalists); otherwise the
    defaults (the datalist's ``name`` and ``synthetic``) apply.
    """
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for item in items:
        key = (str(item.get("dataset", default_name)), bool(item.get("synthetic", default_synthetic)))
        group = groups.setdefault(key, {"name": key[0], "cases": 0, "annotated": set(), "synthetic": key[1]})
        group["cases"] += 1
        if annotated is not None:
            group["annotated"] |= set(annotated(item))
    return [{**g, "annotated": sorted(g["annotated"])} for g in groups.values()]


def model_card(
    family: str,
    training_data: list[dict[str, Any]],
    intended_use: str,
    validation: Mapping[str, float] | None = None,
    limitations: str = "",
) -> dict[str, Any]:
    """The card stored in a checkpoint (JSON types only)."""
    return {
        "family": family,
        "training_data": training_data,
        "n_training_cases": sum(int(d["cases"]) for d in training_data),
        "synthetic_only": bool(training_data) and all(d["synthetic"] for d in training_data),
        "validation": dict(validation or {}),
        "intended_use": intended_use,
        "limitations": limitations,
    }


def synthetic_warning(card: Mapping[str, Any] | None) -> str:
    """:data:`SYNTHETIC_ONLY` for a card of a synthetic-only model, else ``""``."""
    return SYNTHETIC_ONLY if card and card.get("synthetic_only") else ""


def format_card(card: Mapping[str, Any] | None) -> str:
    """Human-readable card (``medcl info CHECKPOINT``)."""
    if not card:
        return "model card: none (checkpoint written before model cards; training data unknown)"
    lines = [f"model card ({card.get('family')})"]
    if card.get("synthetic_only"):
        lines.append(SYNTHETIC_ONLY)
    lines.append(f"training data: {card.get('n_training_cases', 0)} cases")
    for d in card.get("training_data", []):
        kind = "synthetic" if d.get("synthetic") else "real"
        zones = f"; annotated: {', '.join(d['annotated'])}" if d.get("annotated") else ""
        lines.append(f"  - {d['name']}: {d['cases']} cases, {kind}{zones}")
    metrics = card.get("validation") or {}
    shown = ", ".join(f"{k}={'n/a' if v is None else format(v, '.4g')}" for k, v in sorted(metrics.items()))
    n_val = card.get("n_validation_cases")
    lines.append(f"validation{'' if n_val is None else f' ({n_val} cases)'}: {shown or 'none'}")
    lines.append(f"intended use: {card.get('intended_use', '')}")
    if card.get("limitations"):
        lines.append(f"limitations: {card['limitations']}")
    return "\n".join(lines)
