"""The QC image of a zones segmentation: zones over axial slices and one coronal slice through the gland.

Radiological convention on every panel (patient right on screen left) with orientation letters at
the panel edges; a stamp (synthetic-training warning, quality flags) across the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medcl.inferers.zones_roi import ras_volume
from medcl.io.zones_outputs import ZONE_COLOURS
from medcl.postprocess.volumes import ZONE_NAMES
from medcl.utils import atomic_write_path

__all__ = ["AXIAL_LETTERS", "CORONAL_LETTERS", "QC_COLOURS", "axial_display", "coronal_display", "write_qc_png"]

QC_COLOURS: tuple[str, ...] = ZONE_COLOURS


def axial_display(ras: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of a RAS volume as screen rows x columns in radiological convention:
    patient right on screen left, anterior at the top (letters :data:`AXIAL_LETTERS`)."""
    return ras[::-1, ::-1, k].T


def coronal_display(ras: np.ndarray, j: int) -> np.ndarray:
    """Coronal slice ``j`` of a RAS volume as screen rows x columns: patient right on screen left,
    superior at the top (letters :data:`CORONAL_LETTERS`)."""
    return ras[::-1, j, ::-1].T


# screen (left, right, top, bottom) orientation letters of the QC panels
AXIAL_LETTERS: tuple[str, str, str, str] = ("R", "L", "A", "P")
CORONAL_LETTERS: tuple[str, str, str, str] = ("R", "L", "S", "I")


def _letters(ax: Any, letters: Sequence[str]) -> None:
    style = {"color": "yellow", "fontsize": 9, "fontweight": "bold", "transform": ax.transAxes}
    for text, x, y, ha, va in zip(letters, (0.02, 0.98, 0.5, 0.5), (0.5, 0.5, 0.98, 0.02),
                                  ("left", "right", "center", "center"), ("center", "center", "top", "bottom")):
        ax.text(x, y, text, ha=ha, va=va, **style)


def write_qc_png(
    image: np.ndarray, labels: np.ndarray, affine: np.ndarray, path: Path, n: int = 4, stamp: str = ""
) -> Path:
    """Zones over ``n`` axial slices and one coronal slice through the gland, atomically.

    Radiological convention on every panel (patient right on screen left), with R/L/A/P or
    R/L/S/I letters at the panel edges; ``stamp`` (e.g. a synthetic-training warning) is printed
    across the top of the figure.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    (image, spacing), (labels, _) = ras_volume(image, affine), ras_volume(labels, affine)
    slices = np.nonzero(labels.any(axis=(0, 1)))[0]
    lo, hi = (slices.min(), slices.max()) if slices.size else (0, labels.shape[2] - 1)
    picks = np.unique(np.linspace(lo, hi, n + 2).round().astype(int)[1:-1]) if hi > lo else np.array([lo])
    gland_y = np.nonzero(labels.any(axis=(0, 2)))[0]
    j = int(np.round(gland_y.mean())) if gland_y.size else labels.shape[1] // 2
    panels = [(axial_display(image, k), axial_display(labels, k), spacing[1] / spacing[0], f"axial slice {k}",
               AXIAL_LETTERS) for k in picks]
    panels.append((coronal_display(image, j), coronal_display(labels, j), spacing[2] / spacing[0],
                   f"coronal slice {j}", CORONAL_LETTERS))
    fig = Figure(figsize=(3 * len(panels), 3.6))
    cmap = ListedColormap(QC_COLOURS)
    for ax, (img, lab, aspect, title, letters) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        ax.imshow(img, cmap="gray", aspect=aspect)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=1, vmax=4, alpha=0.45, aspect=aspect,
                  interpolation="nearest")
        ax.set_title(f"{title} (radiological)", fontsize=8)
        _letters(ax, letters)
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=z) for c, z in zip(QC_COLOURS, ZONE_NAMES.values())],
               loc="lower center", ncol=4, fontsize=8)
    if stamp:
        fig.suptitle(stamp, color="red", fontsize=9, fontweight="bold")
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return path
