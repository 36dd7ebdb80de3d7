"""The prostate zone label map, remappers and the per-path target split.

Label map (PI-RADS v2 zones, design section 2; Meyer et al. 2019 four-zone annotation):

=====  ==========  ==========================================
value  name        meaning
=====  ==========  ==========================================
0      background  everything outside the prostate zones
1      PZ          peripheral zone
2      TZ          transition zone (central zone included)
3      DPU         distal prostatic urethra
4      AFS         anterior fibromuscular stroma
=====  ==========  ==========================================

The dual-path network splits the five classes between two paths that each see connected zones:

* path A {BG, PZ, TZ}: the classic gland-zone task (MSD labels train it directly). The urethra
  runs through the TZ, so DPU counts as TZ; the AFS lies outside PZ/TZ, so it counts as BG.
* path B {BG, TZ, DPU, AFS}: the central structures; PZ counts as BG.

The paths overlap in BG and TZ. With this split both overlaps carry the same information: the
probability of the central region TZ u DPU (path A's TZ, path B's TZ + DPU), see
:func:`medcl.nets.dualpath.shared_disagreement`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from medcl.errors import MedclError

ZONE_NAMES: tuple[str, ...] = ("background", "PZ", "TZ", "DPU", "AFS")
BACKGROUND, PZ, TZ, DPU, AFS = range(5)
NUM_ZONES = len(ZONE_NAMES)
#: Label map carried by checkpoints (name -> value).
LABEL_MAP: dict[str, int] = {name: i for i, name in enumerate(ZONE_NAMES)}
#: The same map in MSD ``dataset.json`` style (value as string -> name).
MSD_LABELS: dict[str, str] = {str(i): name for i, name in enumerate(ZONE_NAMES)}

PATH_A_NAMES: tuple[str, ...] = ("background", "PZ", "TZ")
PATH_B_NAMES: tuple[str, ...] = ("background", "TZ", "DPU", "AFS")
#: Lookup tables: five-class label -> path class.
ZONES_TO_A: tuple[int, ...] = (0, 1, 2, 2, 0)
ZONES_TO_B: tuple[int, ...] = (0, 0, 1, 2, 3)

#: Named remappers from a source labelling to the five-class map.
REMAPS: dict[str, dict[int, int]] = {
    "identity": {i: i for i in range(NUM_ZONES)},
    "msd": {0: 0, 1: PZ, 2: TZ},  # Medical Segmentation Decathlon Task05: 1 = PZ, 2 = TZ
}


def resolve_remap(remap: str | Mapping[int, int]) -> dict[int, int]:
    """Return a remapping dict from a name in :data:`REMAPS` or an explicit ``{source: zone}``."""
    if isinstance(remap, str):
        if remap not in REMAPS:
            raise MedclError(f"label_remap: unknown remapper {remap!r}; choose one of {sorted(REMAPS)}")
        return dict(REMAPS[remap])
    table = {int(k): int(v) for k, v in remap.items()}
    bad = sorted(v for v in table.values() if not 0 <= v < NUM_ZONES)
    if bad:
        raise MedclError(f"label_remap: target values {bad} are outside the zone labels 0-{NUM_ZONES - 1}")
    return table


def remap_labels(label: np.ndarray | torch.Tensor, remap: Mapping[int, int], source: str = "label"):
    """Map label values through ``remap`` with one table lookup (numpy or torch, same type back).

    Raises:
        MedclError: ``source`` holds a value that ``remap`` does not cover.
    """
    values = torch.as_tensor(label).round().long()
    present = torch.unique(values).tolist()
    missing = sorted(set(present) - set(remap))
    if missing:
        raise MedclError(f"{source}: label values {missing} are not covered by the remapper {dict(remap)}")
    lut = torch.zeros(max(max(remap), max(present)) + 1, dtype=torch.long)
    lut[torch.tensor(list(remap))] = torch.tensor(list(remap.values()))
    out = lut[values]
    return out.numpy().astype(np.uint8) if isinstance(label, np.ndarray) else out.to(label.device)


def _lookup(zones: torch.Tensor, table: tuple[int, ...]) -> torch.Tensor:
    return torch.as_tensor(table, device=zones.device)[zones.long()]


def split_targets(zones: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split five-class labels into the per-path targets and the gland mask.

    Args:
        zones: integer labels, any shape (typically ``(B, 1, X, Y, Z)``).

    Returns:
        ``{"a": path A labels, "b": path B labels, "gland": float mask of label > 0}``.
    """
    return {
        "a": _lookup(zones, ZONES_TO_A),
        "b": _lookup(zones, ZONES_TO_B),
        "gland": (zones > 0).to(torch.float32),
    }
