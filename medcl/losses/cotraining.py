"""Losses of the dual-path prostate zone network (design section 2).

Stage 1 (supervised): Dice + cross-entropy per path (MONAI ``DiceCELoss``) on the path targets of
:func:`medcl.data.zones_labels.split_targets`, plus an auxiliary whole-gland loss (BCE on the gland
mask, or MSE on a tanh-squashed signed distance map). Stage 2 (co-training) adds a consistency
loss between the paths' probabilities on their shared classes (BG and TZ) with a sigmoid ramp-up
of its weight, as in temporal ensembling / mean teacher (Laine & Aila, ICLR 2017; Tarvainen &
Valpola, NeurIPS 2017); the two paths act as co-trained views of the shared classes (Blum &
Mitchell, COLT 1998). The consistency term needs no labels, so unlabeled scans can take part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch.nn.modules.loss import _Loss

from medcl.data.zones_labels import NUM_ZONES, PATH_A_NAMES, PATH_B_NAMES, split_targets
from medcl.nets.dualpath import shared_disagreement

__all__ = ["PathConsistencyLoss", "ZonesSupervisedLoss", "sigmoid_rampup"]


def sigmoid_rampup(step: float, length: float) -> float:
    """Sigmoid ramp ``exp(-5 (1 - t)^2)`` with ``t = clip(step / length, 0, 1)`` (Laine & Aila 2017).

    Returns 1.0 when ``length`` is 0 (no ramp).
    """
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def _check_logits(name: str, logits: torch.Tensor, channels: int, target: torch.Tensor | None = None) -> None:
    if logits.ndim < 3 or logits.shape[1] != channels:
        raise ValueError(f"{name}: expected logits (B, {channels}, ...), got {tuple(logits.shape)}")
    if target is not None and (target.shape[0] != logits.shape[0] or target.shape[2:] != logits.shape[2:]):
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )


class PathConsistencyLoss(_Loss):
    """Mean squared disagreement of the two paths on their shared classes (BG, TZ).

    With the class split of :mod:`medcl.data.zones_labels` the TZ and BG disagreements are the same
    number ``d = p_B(TZ) + p_B(DPU) - p_A(TZ)`` (see :func:`medcl.nets.dualpath.shared_disagreement`);
    the loss is ``(dTZ^2 + dBG^2) / 2 = d^2`` averaged over voxels. It is zero exactly when the
    paths agree; gradients flow into both paths (co-training, no teacher).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-voxel map ``(B, 1, ...)``).
    """

    def forward(self, logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
        """Consistency between path A logits ``(B, 3, ...)`` and path B logits ``(B, 4, ...)``."""
        _check_logits("path A", logits_a, len(PATH_A_NAMES))
        _check_logits("path B", logits_b, len(PATH_B_NAMES), logits_a)
        d = shared_disagreement(logits_a.float().softmax(1), logits_b.float().softmax(1))
        sq = d.square()
        if self.reduction == "mean":
            return sq.mean()
        return sq.sum() if self.reduction == "sum" else sq


class ZonesSupervisedLoss(_Loss):
    """Stage-1 loss: Dice + CE per path plus the auxiliary gland term; or Dice + CE on 5 classes.

    For dual-path outputs ``{"a", "b", "aux"}``: ``DiceCE_A + DiceCE_B + lambda_aux * L_aux``;
    for the baseline ``{"fused"}``: ``DiceCE`` over the five zones. Dice is computed over the whole
    batch of patches per class ("batch Dice", as nnU-Net), so patches that miss a small zone do not
    score it as a failure.

    Args:
        aux: ``"mask"`` (BCE with logits on the gland mask), ``"sdm"`` (MSE between ``tanh(aux)``
            and a signed distance target in [-1, 1]) or ``"none"``.
        lambda_aux: weight of the auxiliary term.
        lambda_dice: weight of the Dice part of each ``DiceCELoss``.
        lambda_ce: weight of the cross-entropy part of each ``DiceCELoss``.
    """

    def __init__(
        self, aux: str = "mask", lambda_aux: float = 0.5, lambda_dice: float = 1.0, lambda_ce: float = 1.0
    ) -> None:
        super().__init__()
        if aux not in ("mask", "sdm", "none"):
            raise ValueError(f"aux must be 'mask', 'sdm' or 'none', got {aux!r}")
        self.aux, self.lambda_aux = aux, lambda_aux
        self.dice_ce = DiceCELoss(
            to_onehot_y=True, softmax=True, batch=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce
        )

    def terms(
        self, outputs: Mapping[str, torch.Tensor], zones: torch.Tensor, aux_target: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Each weighted-in term separately: ``{"fused"}`` or ``{"a", "b"[, "aux"]}``.

        Args:
            outputs: network outputs.
            zones: five-class labels ``(B, 1, ...)``.
            aux_target: ``(B, 1, ...)`` signed distance target (needed for ``aux="sdm"``).
        """
        if zones.ndim < 3 or zones.shape[1] != 1:
            raise ValueError(f"zones: expected labels (B, 1, ...), got {tuple(zones.shape)}")
        if "fused" in outputs:
            _check_logits("fused", outputs["fused"], NUM_ZONES, zones)
            return {"fused": self.dice_ce(outputs["fused"].float(), zones)}
        _check_logits("path A", outputs["a"], len(PATH_A_NAMES), zones)
        _check_logits("path B", outputs["b"], len(PATH_B_NAMES), zones)
        targets = split_targets(zones)
        result = {
            "a": self.dice_ce(outputs["a"].float(), targets["a"]),
            "b": self.dice_ce(outputs["b"].float(), targets["b"]),
        }
        if self.aux != "none" and "aux" in outputs:
            result["aux"] = self._aux_loss(outputs["aux"].float(), targets["gland"], aux_target)
        return result

    def _aux_loss(self, pred: torch.Tensor, gland: torch.Tensor, sdm: torch.Tensor | None) -> torch.Tensor:
        _check_logits("aux", pred, 1, gland)
        if self.aux == "mask":
            return F.binary_cross_entropy_with_logits(pred, gland)
        if sdm is None:
            raise ValueError("aux='sdm' needs a signed distance target (aux_target), got None")
        _check_logits("aux", pred, 1, sdm)
        return F.mse_loss(torch.tanh(pred), sdm.float())

    def total(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of :meth:`terms` (the auxiliary term times ``lambda_aux``)."""
        return sum(self.lambda_aux * v if k == "aux" else v for k, v in terms.items())

    def forward(
        self, outputs: Mapping[str, torch.Tensor], zones: torch.Tensor, aux_target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Total supervised loss (scalar)."""
        return self.total(self.terms(outputs, zones, aux_target))
