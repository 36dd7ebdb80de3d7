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

import functools
from collections.abc import Mapping, Sequence

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


# ----------------------------------------------------------------------------------- partial labels
#: Where an unannotated zone's voxels end up in a partial label map: data sets without a DPU
#: label (MSD Task05, Prostate158, PI-CAI) draw the urethra inside the TZ / central gland; the
#: other zones, when not annotated, are left as background (Shi et al. 2021, MedIA 70:101979).
ZONE_HOST: dict[int, int] = {PZ: BACKGROUND, TZ: BACKGROUND, DPU: TZ, AFS: BACKGROUND}


def annotated_mask(zones: Sequence[str | int] | None = None, remap: str | Mapping[int, int] = "identity") -> tuple[bool, ...]:
    """Which of the five labels a case annotates (background always), from zone names or values.

    Without ``zones`` the annotated set is what the label remapper can produce (``msd``: PZ, TZ).

    Raises:
        MedclError: an unknown zone name or value.
    """
    if zones is None:
        present = {v for v in resolve_remap(remap).values()}
    else:
        present = set()
        for z in zones:
            if isinstance(z, str) and z in LABEL_MAP:
                present.add(LABEL_MAP[z])
            elif not isinstance(z, str) and 0 <= int(z) < NUM_ZONES:
                present.add(int(z))
            else:
                raise MedclError(f"zones: unknown zone {z!r}; use names {list(ZONE_NAMES[1:])} or values 1-4")
    return tuple(i == BACKGROUND or i in present for i in range(NUM_ZONES))


def observed_label(annotated: Sequence[bool]) -> tuple[int, ...]:
    """The label each true zone carries in a map that annotates only ``annotated`` (via :data:`ZONE_HOST`)."""
    out = []
    for zone in range(NUM_ZONES):
        while not annotated[zone]:
            zone = ZONE_HOST[zone]
        out.append(zone)
    return tuple(out)


@functools.lru_cache(maxsize=256)
def merged_classes(annotated: tuple[bool, ...], table: tuple[int, ...]) -> tuple[int, ...]:
    """Marginal class merge of one output head for a partially annotated case.

    ``table`` maps the five zones to the head's classes (:data:`ZONES_TO_A`, :data:`ZONES_TO_B`, or
    the identity for the five-class head). Two head classes are merged when one observed label
    can stand for both (e.g. path B's TZ and DPU when the DPU is drawn as TZ). Returns, per head
    class, the index of its merged group (the smallest class in the group); all classes are their
    own group when every zone is annotated. The marginal loss sums the probabilities of each
    group (Shi et al., "Marginal loss and exclusion loss for partially supervised multi-organ
    segmentation", MedIA 2021).
    """
    n = max(table) + 1
    parent = list(range(n))

    def root(c: int) -> int:
        while parent[c] != c:
            c = parent[c]
        return c

    observed = observed_label(annotated)
    for label in set(observed):
        classes = sorted({table[z] for z in range(NUM_ZONES) if observed[z] == label})
        for c in classes[1:]:
            a, b = root(classes[0]), root(c)
            parent[max(a, b)] = min(a, b)
    return tuple(root(c) for c in range(n))


def observed_prediction(pred: torch.Tensor, annotated: Sequence[bool]) -> torch.Tensor:
    """Predicted zone labels as a partial map with only ``annotated`` zones would draw them."""
    return torch.as_tensor(observed_label(tuple(bool(a) for a in annotated)), device=pred.device)[pred.long()]
