"""Losses of the dual-path prostate zone network (design section 2).

Stage 1 (supervised): Dice + cross-entropy per path (MONAI ``DiceCELoss``) on the path targets of
:func:`medcl.data.zones_labels.split_targets`, plus an auxiliary whole-gland loss (BCE on the gland
mask, or MSE on a tanh-squashed signed distance map). Stage 2 (co-training) adds a consistency
loss between the paths' probabilities on their shared classes (BG and TZ) with a sigmoid ramp-up
of its weight, as in temporal ensembling / mean teacher (Laine & Aila, ICLR 2017; Tarvainen &
Valpola, NeurIPS 2017); the two paths act as co-trained views of the shared classes (Blum &
Mitchell, COLT 1998). The consistency term needs no labels, so unlabeled scans can take part.

Partial labels (MSD, Prostate158, PI-CAI annotate only PZ and TZ): each case carries which zones
it annotates, and the per-path Dice + CE become a marginal loss (Shi et al., "Marginal loss and
exclusion loss for partially supervised multi-organ segmentation", MedIA 2021): the probabilities
of the classes an observed label can stand for are summed (unannotated AFS into background, an
unannotated DPU into the TZ it is drawn in, :func:`medcl.data.zones_labels.merged_classes`) before
Dice and CE, so nothing is taught about a zone the case does not annotate. The auxiliary gland
term is skipped for cases whose gland outline is unknown (a zone that would be drawn as background
is not annotated). The consistency term compares P(TZ u DPU) of the two paths; under every
annotated set that quantity is a union of merged groups and it involves no labels, so it already
ignores what is not annotated and is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss
from torch.nn.modules.loss import _Loss

from medcl.data.zones_labels import (
    NUM_ZONES,
    PATH_A_NAMES,
    PATH_B_NAMES,
    ZONE_HOST,
    ZONES_TO_A,
    ZONES_TO_B,
    merged_classes,
    split_targets,
)
from medcl.nets.dualpath import shared_disagreement

__all__ = ["PathConsistencyLoss", "ZonesSupervisedLoss", "marginal_probabilities", "sigmoid_rampup"]
_IDENTITY: tuple[int, ...] = tuple(range(NUM_ZONES))


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


def class_groups(annotated: torch.Tensor, table: tuple[int, ...]) -> torch.Tensor:
    """``(B, C)`` merged-group index per head class for each case's annotated mask ``(B, 5)``."""
    rows = [merged_classes(tuple(bool(a) for a in row), table) for row in annotated.tolist()]
    return torch.as_tensor(rows, dtype=torch.long, device=annotated.device)


def marginal_probabilities(logits: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities with each merged group summed into its first class (others zero)."""
    probs = logits.float().softmax(1)
    index = groups.view(*groups.shape, *([1] * (probs.ndim - 2))).expand_as(probs)
    return torch.zeros_like(probs).scatter_add(1, index, probs)


def marginal_target(target: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Head labels ``(B, 1, ...)`` mapped to their merged group."""
    return groups.gather(1, target.long().flatten(1)).view_as(target)


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
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce
        self.dice = DiceLoss(to_onehot_y=True, softmax=False, batch=True)

    def _head_loss(
        self, logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor | None, table: tuple[int, ...]
    ) -> torch.Tensor:
        """Dice + CE of one head; the marginal version when some case is partially annotated."""
        if annotated is None or bool(annotated.all()):
            return self.dice_ce(logits.float(), target)
        groups = class_groups(annotated, table)
        probs, merged = marginal_probabilities(logits, groups), marginal_target(target, groups)
        ce = F.nll_loss(probs.clamp_min(1e-8).log(), merged[:, 0])
        return self.lambda_dice * self.dice(probs, merged) + self.lambda_ce * ce

    def terms(
        self,
        outputs: Mapping[str, torch.Tensor],
        zones: torch.Tensor,
        aux_target: torch.Tensor | None = None,
        annotated: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each weighted-in term separately: ``{"fused"}`` or ``{"a", "b"[, "aux"]}``.

        Args:
            outputs: network outputs.
            zones: five-class labels ``(B, 1, ...)``.
            aux_target: ``(B, 1, ...)`` signed distance target (needed for ``aux="sdm"``).
            annotated: ``(B, 5)`` bool, which labels each case annotates (``None``: all).
        """
        if zones.ndim < 3 or zones.shape[1] != 1:
            raise ValueError(f"zones: expected labels (B, 1, ...), got {tuple(zones.shape)}")
        if "fused" in outputs:
            _check_logits("fused", outputs["fused"], NUM_ZONES, zones)
            return {"fused": self._head_loss(outputs["fused"], zones, annotated, _IDENTITY)}
        _check_logits("path A", outputs["a"], len(PATH_A_NAMES), zones)
        _check_logits("path B", outputs["b"], len(PATH_B_NAMES), zones)
        targets = split_targets(zones)
        result = {
            "a": self._head_loss(outputs["a"], targets["a"], annotated, ZONES_TO_A),
            "b": self._head_loss(outputs["b"], targets["b"], annotated, ZONES_TO_B),
        }
        if self.aux != "none" and "aux" in outputs:
            known = _gland_known(annotated, zones.shape[0], zones.device)
            if bool(known.any()):
                result["aux"] = self._aux_loss(
                    outputs["aux"].float()[known], targets["gland"][known],
                    None if aux_target is None else aux_target[known],
                )
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
        self,
        outputs: Mapping[str, torch.Tensor],
        zones: torch.Tensor,
        aux_target: torch.Tensor | None = None,
        annotated: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Total supervised loss (scalar); ``annotated`` as in :meth:`terms`."""
        return self.total(self.terms(outputs, zones, aux_target, annotated))


def _gland_known(annotated: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Cases whose gland mask is known: every zone that would otherwise be drawn as background is annotated."""
    if annotated is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    hidden_in_bg = [z for z, host in ZONE_HOST.items() if host == 0]
    return annotated[:, hidden_in_bg].all(1)
