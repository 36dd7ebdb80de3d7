"""Loss terms of ProtoECGNet (Sethi et al., 2025), reproducing the reference implementation.

By default every term follows the official code exactly:

- BCE with logits and positive weights ``(total positive labels - n_c) / n_c`` from the training
  labels (:func:`positive_weights`); a class without positives would get ``inf`` there, so it gets
  the finite weight ``total positive labels`` and a warning instead.
- clustering: ``-mean`` over all (sample, class) pairs of ``max_p sim[b, p] * 1[p in c and y_bc]``
  (pairs whose label is absent contribute 0);
- separation: ``mean`` over all (sample, class) pairs of ``max_p sim[b, p] * (1 - 1[p in c and
  y_bc])``: for a label the sample lacks the max runs over *all* prototypes. ``mode="protopnet"``
  (an option) uses instead, per sample, the max over prototypes of classes the sample lacks;
- diversity: ``||P P^T - I||_F^2 / P^2`` on L2-normalised (flattened) prototypes;
- co-occurrence contrastive term: with ``S`` the clamped cosine matrix of the prototypes and
  ``M = A J A^T`` (``A`` the identity matrix, ``J`` the Jaccard co-occurrence of the branch's
  training labels), ``-(sum S * M / sum M - sum S * (1 - M) / sum (1 - M)) / sqrt(P)``;
- masked L1 on the classifier's weights to other classes (classifier stage) and plain L1 (fusion).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = [
    "ClusterLoss",
    "CooccurrenceContrastiveLoss",
    "DiversityLoss",
    "MaskedL1Loss",
    "PrototypeLoss",
    "SeparationLoss",
    "class_max",
    "jaccard_matrix",
    "positive_weights",
    "prototype_gram",
]

_MASK_EPS = 1e-6


def positive_weights(labels: torch.Tensor, names: Sequence[str] | None = None) -> torch.Tensor:
    """BCE positive weights ``(total positives - n_c) / n_c`` of the reference code.

    Args:
        labels: ``(N, C)`` binary training labels.
        names: class names for the warning about classes without positives.

    Returns:
        ``(C,)`` float tensor. A class with ``n_c = 0`` gets ``total positives`` (finite) and a
        warning naming it, where the reference would divide by zero.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (N, C); got {tuple(labels.shape)}")
    counts = labels.float().sum(dim=0)
    total = counts.sum()
    empty = counts == 0
    if bool(empty.any()):
        idx = empty.nonzero().flatten().tolist()
        which = [names[i] for i in idx] if names is not None else idx
        warnings.warn(f"classes without positive training labels {which}: positive weight set to {total:.0f}",
                      stacklevel=2)
    return (total - counts) / counts.clamp(min=1.0)


def jaccard_matrix(labels: torch.Tensor) -> torch.Tensor:
    """Label co-occurrence as Jaccard index ``|a & b| / max(|a | b|, 1e-6)``, ``(C, C)``."""
    y = labels.float()
    inter = y.T @ y
    counts = y.sum(dim=0)
    union = (counts[None, :] + counts[:, None] - inter).clamp(min=1e-6)
    return inter / union


def _check_sims(sims: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor) -> None:
    if sims.ndim != 2 or targets.ndim != 2 or identity.shape != (sims.shape[1], targets.shape[1]):
        raise ValueError(
            f"expected similarities (B, P), targets (B, C), identity (P, C); got {tuple(sims.shape)}, "
            f"{tuple(targets.shape)}, {tuple(identity.shape)}"
        )
    if sims.shape[0] != targets.shape[0]:
        raise ValueError(f"batch sizes differ: similarities {sims.shape[0]}, targets {targets.shape[0]}")


def class_max(sims: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """``(B, C)``: the highest similarity among each class's prototypes.

    ``identity`` is the ``(P, C)`` one-hot prototype-to-class matrix
    (:func:`medcl.nets.prototype.class_identity`: every prototype belongs to exactly one class,
    every class has prototypes). One segment reduction over ``(B, P)``; no ``(B, P, C)`` tensor.
    """
    index = identity.argmax(dim=1).expand(sims.shape[0], -1)
    start = sims.new_full((sims.shape[0], identity.shape[1]), float("-inf"))
    return start.scatter_reduce(1, index, sims, "amax", include_self=True)


def _shares(identity: torch.Tensor) -> torch.Tensor:
    """``(C,)`` bool: the class does not own every prototype (so a masked max also sees zeros)."""
    return identity.sum(dim=0) < identity.shape[0]


class ClusterLoss(_Loss):
    """Clustering term (reference semantics): pull each present label's best prototype close.

    The reference's ``max_p sim[b, p] * 1[p in c] * y[b, c]`` over a ``(B, P, C)`` mask is computed
    as ``y[b, c] * max(class_max[b, c], 0)`` (the zero is what the masked-out prototypes give; for
    ``y >= 0`` the two are equal, gradients included).
    """

    def forward(self, sims: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        _check_sims(sims, targets, identity)
        own = class_max(sims, identity.to(sims.dtype))
        own = torch.where(_shares(identity), own.clamp(min=0), own)
        return -(targets.to(sims.dtype) * own).mean()


class SeparationLoss(_Loss):
    """Separation term: push prototypes of other classes away.

    Args:
        mode: ``"reference"`` (default): mean over all (sample, class) pairs of the max similarity
            over prototypes outside that pair's own mask (all prototypes for absent labels).
            ``"protopnet"``: per sample, the max similarity over prototypes of labels it lacks,
            averaged over samples (samples carrying every class are skipped).

    The reference mode's ``max_p sim[b, p] * (1 - 1[p in c] * y[b, c])`` is computed as
    ``max((1 - y[b, c]) * class_max[b, c], max_{c' != c} class_max[b, c'])`` from the ``(B, C)``
    class maxima (a ``(B, C, C)`` step instead of the ``(B, P, C)`` mask).
    """

    def __init__(self, mode: Literal["reference", "protopnet"] = "reference") -> None:
        super().__init__()
        if mode not in ("reference", "protopnet"):
            raise ValueError(f"mode must be 'reference' or 'protopnet'; got {mode!r}")
        self.mode = mode

    def forward(self, sims: torch.Tensor, targets: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        _check_sims(sims, targets, identity)
        targets = targets.to(sims.dtype)
        if self.mode == "reference":
            own = class_max(sims, identity.to(sims.dtype))  # (B, C)
            n = own.shape[1]
            eye = torch.eye(n, dtype=torch.bool, device=own.device)
            others = own[:, None, :].masked_fill(eye, float("-inf")).amax(dim=2)  # -inf: no other class
            return torch.maximum((1.0 - targets) * own, others).mean()
        foreign = (1.0 - targets) @ identity.to(sims.dtype).T > 0  # (B, P)
        best = sims.masked_fill(~foreign, float("-inf")).amax(dim=1)
        keep = foreign.any(dim=1)
        kept = keep.sum()  # no host sync: a sample carrying every class adds 0 and is not counted
        mean = best.masked_fill(~keep, 0.0).sum() / kept.clamp(min=1).to(sims.dtype)
        return torch.where(kept > 0, mean, sims.sum() * 0.0)


def _normalised(prototypes: torch.Tensor) -> torch.Tensor:
    return F.normalize(prototypes.reshape(prototypes.shape[0], -1), dim=1)


class _SelfGram(torch.autograd.Function):
    """``p @ p.T`` whose backward is one matrix product, ``(G + G^T) @ p``, where autograd's
    ``mm`` backward takes two (one per operand) and adds them: the same gradient, up to rounding."""

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(p)
        return p @ p.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        return (grad + grad.T) @ p


def prototype_gram(prototypes: torch.Tensor) -> torch.Tensor:
    """``(P, P)`` cosine (Gram) matrix of the L2-normalised, flattened prototypes: the one matrix
    the diversity and contrastive terms share (:class:`PrototypeLoss` computes it once a step)."""
    return _SelfGram.apply(_normalised(prototypes))


class DiversityLoss(_Loss):
    """``||P P^T - I||_F^2 / P^2`` on L2-normalised prototypes (zero for orthonormal ones)."""

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        return self.from_gram(prototype_gram(prototypes))

    @staticmethod
    def from_gram(gram: torch.Tensor) -> torch.Tensor:
        """The term from a precomputed :func:`prototype_gram`."""
        n = gram.shape[0]
        return (gram - torch.eye(n, device=gram.device, dtype=gram.dtype)).square().sum() / n**2


class CooccurrenceContrastiveLoss(_Loss):
    """Label co-occurrence contrastive term of ProtoECGNet.

    Prototypes of co-occurring labels (weighted by the Jaccard matrix ``cooccurrence``) are pulled
    together; all other pairs are pushed apart.

    Args:
        cooccurrence: ``(C, C)`` Jaccard co-occurrence of the branch's training labels.
    """

    def __init__(self, cooccurrence: torch.Tensor) -> None:
        super().__init__()
        if cooccurrence.ndim != 2 or cooccurrence.shape[0] != cooccurrence.shape[1]:
            raise ValueError(f"cooccurrence must be (C, C); got {tuple(cooccurrence.shape)}")
        self.register_buffer("cooccurrence", cooccurrence.float())
        self._weights: tuple[torch.Tensor, tuple, torch.Tensor] | None = None

    def forward(self, prototypes: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return self.from_gram(prototype_gram(prototypes), identity)

    def pair_weights(self, identity: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(P, P)`` weights ``M / (sum M + eps) - (1 - M) / (sum (1 - M) + eps)``, ``M = A J A^T``:
        the term is ``-sum(S * weights) / sqrt(P)``. They depend on the identity and the
        co-occurrence only, so they are kept between steps (rebuilt when either changes)."""
        if torch.compiler.is_compiling() or torch.is_inference_mode_enabled():
            return self._pair_weights(identity, dtype)  # traced into the graph / not kept
        key = (identity.device, dtype, identity._version, self.cooccurrence._version,
               self.cooccurrence.device, self.cooccurrence.data_ptr())
        cached = self._weights
        if cached is None or cached[0] is not identity or cached[1] != key:
            with torch.no_grad():
                cached = self._weights = (identity, key, self._pair_weights(identity, dtype))
        return cached[2]

    def _pair_weights(self, identity: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        a = identity.to(dtype)
        pos = a @ self.cooccurrence.to(dtype) @ a.T
        neg = 1.0 - pos
        return pos / (pos.sum() + _MASK_EPS) - neg / (neg.sum() + _MASK_EPS)

    def from_gram(self, gram: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """The term from a precomputed :func:`prototype_gram` (``(P, P)``)."""
        n = gram.shape[0]
        if identity.shape != (n, self.cooccurrence.shape[0]):
            raise ValueError(f"identity must be ({n}, {self.cooccurrence.shape[0]}); got {tuple(identity.shape)}")
        sim = gram.clamp(-1 + 1e-6, 1 - 1e-6)
        return -(sim * self.pair_weights(identity, gram.dtype)).sum() / n**0.5


class MaskedL1Loss(_Loss):
    """L1 norm of a ``(C, P)`` weight; with ``identity`` only the connections to other classes."""

    def forward(self, weight: torch.Tensor, identity: torch.Tensor | None = None) -> torch.Tensor:
        if identity is None:
            return weight.abs().sum()
        if identity.T.shape != weight.shape:
            raise ValueError(f"identity^T {tuple(identity.T.shape)} must match weight {tuple(weight.shape)}")
        return (weight * (1.0 - identity.T.to(weight.dtype))).abs().sum()


class PrototypeLoss(_Loss):
    """Joint-stage loss of one branch: BCE + clustering + separation + diversity + contrastive + sparsity.

    Defaults are the paper's weights (clustering 0.004, separation 0.0004, diversity 250,
    contrastive 300; sparsity 0 as in the paper). Every argument is a keyword.

    Args:
        pos_weight: ``(C,)`` BCE positive weights (:func:`positive_weights`) or None.
        cooccurrence: ``(C, C)`` Jaccard matrix (:func:`jaccard_matrix`) or None (no contrastive term).
        clustering_weight, separation_weight, diversity_weight, contrastive_weight, sparsity_weight:
            the weight of each term in the sum.
        separation_mode: how the separation term picks foreign prototypes (see :class:`SeparationLoss`).

    ``forward`` returns a dict of the weighted-sum ``"loss"`` and each unweighted term, under
    :data:`TERMS` names (``"bce"``, ``"clustering"``, ``"separation"``, ``"diversity"``,
    ``"sparsity"`` and, with a co-occurrence matrix, ``"contrastive"``).
    """

    TERMS = ("bce", "clustering", "separation", "diversity", "sparsity", "contrastive")

    def __init__(
        self,
        *,
        pos_weight: torch.Tensor | None = None,
        cooccurrence: torch.Tensor | None = None,
        clustering_weight: float = 0.004,
        separation_weight: float = 0.0004,
        diversity_weight: float = 250.0,
        contrastive_weight: float = 300.0,
        sparsity_weight: float = 0.0,
        separation_mode: Literal["reference", "protopnet"] = "reference",
    ) -> None:
        super().__init__()
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())
        self.weights = {"clustering": clustering_weight, "separation": separation_weight,
                        "diversity": diversity_weight, "contrastive": contrastive_weight,
                        "sparsity": sparsity_weight}
        self.cluster = ClusterLoss()
        self.separate = SeparationLoss(separation_mode)
        self.diversity = DiversityLoss()
        self.contrastive = None if cooccurrence is None else CooccurrenceContrastiveLoss(cooccurrence)

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        sims: torch.Tensor,
        prototypes: torch.Tensor,
        identity: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        targets = targets.to(logits.dtype)
        pw = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        gram = prototype_gram(prototypes)  # once a step, shared by diversity and contrastive
        terms = {
            "bce": F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw),
            "clustering": self.cluster(sims, targets, identity),
            "separation": self.separate(sims, targets, identity),
            "diversity": self.diversity.from_gram(gram),
            "sparsity": sims.clamp(min=0).sum(dim=1).mean(),
        }
        if self.contrastive is not None:
            terms["contrastive"] = self.contrastive.from_gram(gram, identity)
        loss = terms["bce"] + sum(self.weights[k] * v for k, v in terms.items() if k != "bce")
        return {"loss": loss, **terms}
