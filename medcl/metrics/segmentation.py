"""Per-zone segmentation metrics (Dice, MASD, HD95 in mm) with an explicit empty-mask policy.

Computed with MONAI ``DiceMetric``, ``SurfaceDistanceMetric`` (symmetric: mean over the surface
points of both masks) and ``HausdorffDistanceMetric`` (95th percentile, symmetric), always with the
true voxel spacing.

Empty-mask policy (never dropped, never scored as perfect), per zone and case, ``status`` is:

* ``"ok"``: both masks non-empty, every metric defined;
* ``"pred_empty"``: reference present, prediction empty -> Dice 0, MASD/HD95 undefined (NaN);
* ``"ref_empty"``: prediction present, reference empty -> Dice 0, MASD/HD95 undefined (NaN);
* ``"both_empty"``: Dice, MASD, HD95 undefined (NaN); a true negative, counted separately.

:func:`summarize_zone_metrics` averages Dice over every case where either mask is present (the
one-sided empties count as 0) and distances over ``"ok"`` cases, and reports the counts of each
status beside the means.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric, SurfaceDistanceMetric

from medcl.errors import MedclError

STATUSES: tuple[str, ...] = ("ok", "pred_empty", "ref_empty", "both_empty")


def _one_hot(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(labels).astype(np.int64))
    return torch.nn.functional.one_hot(t, n_classes).movedim(-1, 0)[None].float()


def _status(pred_n: np.ndarray, ref_n: np.ndarray) -> list[str]:
    codes = (pred_n == 0).astype(int) + 2 * (ref_n == 0).astype(int)
    return [("ok", "pred_empty", "ref_empty", "both_empty")[c] for c in codes]


def _monai_scores(pred: torch.Tensor, ref: torch.Tensor, spacing: Sequence[float]) -> np.ndarray:
    """``(3, C-1)`` array: Dice, MASD, HD95 per foreground class (NaN/inf where undefined)."""
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    masd = SurfaceDistanceMetric(include_background=False, symmetric=True, reduction="none")
    hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [dice(pred, ref), masd(pred, ref, spacing=list(spacing)), hd95(pred, ref, spacing=list(spacing))]
    return torch.cat(rows).numpy().astype(np.float64)


def zone_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], names: Mapping[int, str]
) -> list[dict]:
    """Dice, MASD and HD95 (mm) per zone for one case.

    Args:
        pred: integer label map.
        ref: reference label map of the same shape.
        spacing: voxel size in mm per axis.
        names: label value -> zone name (background 0 excluded).

    Returns:
        One dict per zone: ``zone, label, dice, masd_mm, hd95_mm, status, pred_voxels, ref_voxels``.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise MedclError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    n_classes = int(max(max(names), pred.max(initial=0), ref.max(initial=0))) + 1
    scores = _monai_scores(_one_hot(pred, n_classes), _one_hot(ref, n_classes), spacing)
    labels = np.asarray(sorted(names))
    pred_n = np.bincount(pred.ravel().astype(np.int64), minlength=n_classes)[labels]
    ref_n = np.bincount(ref.ravel().astype(np.int64), minlength=n_classes)[labels]
    status = _status(pred_n, ref_n)
    picked = scores[:, labels - 1]
    defined = np.asarray(status) == "ok"
    picked[1:, ~defined] = np.nan
    picked[0] = np.where(np.asarray(status) == "both_empty", np.nan, np.where(defined, picked[0], 0.0))
    return [
        {"zone": names[int(lab)], "label": int(lab), "dice": float(picked[0, i]), "masd_mm": float(picked[1, i]),
         "hd95_mm": float(picked[2, i]), "status": status[i], "pred_voxels": int(pred_n[i]),
         "ref_voxels": int(ref_n[i])}
        for i, lab in enumerate(labels)
    ]


def summarize_zone_metrics(rows: Sequence[Mapping]) -> dict:
    """Per-zone summary of :func:`zone_metrics` rows over many cases (policy in the module doc).

    Returns:
        ``{zone: {n_cases, n_ok, n_pred_empty, n_ref_empty, n_both_empty, n_dice, dice_mean,
        dice_std, n_distance, masd_mm_mean, hd95_mm_mean}}``; means are ``None`` when nothing counts.
    """
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return {}
    summary: dict = {}
    for zone, group in frame.groupby("zone", sort=False):
        counts = group["status"].value_counts()
        ok = group[group["status"] == "ok"]
        scored = group[group["status"] != "both_empty"]
        summary[str(zone)] = {
            "n_cases": int(len(group)),
            **{f"n_{s}": int(counts.get(s, 0)) for s in STATUSES},
            "n_dice": int(len(scored)),
            "dice_mean": _mean(scored["dice"]),
            "dice_std": _mean(scored["dice"], np.std),
            "n_distance": int(len(ok)),
            "masd_mm_mean": _mean(ok["masd_mm"]),
            "hd95_mm_mean": _mean(ok["hd95_mm"]),
        }
    return summary


def _mean(values, fn=np.mean) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    return float(fn(arr)) if arr.size else None
