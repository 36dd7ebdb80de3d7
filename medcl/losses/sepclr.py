"""SepCLR losses: separating common from salient patterns with contrastive learning.

Louiset, Duchesnay, Grigis, Gori, "Separating common from salient patterns with contrastive
representation learning", ICLR 2024. Background samples have label 0, target samples label 1.

All log-mean-exp terms are computed with ``logsumexp`` so they stay finite for far-apart
(unnormalised) salient vectors, and squared distances are taken from explicit differences
(no ``|a|^2 + |b|^2 - 2ab`` cancellation), so duplicate points give zero distance and zero
gradient instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from medcl.config import SEPCLR_PRESETS as PRESETS  # ``(beta_s, beta_reg, lam)`` per preset name

__all__ = [
    "PRESETS",
    "AlignmentLoss",
    "InformationLessLoss",
    "KJEMLoss",
    "SalientUniformityLoss",
    "SepCLRLoss",
    "SepCLRTerms",
    "UniformityLoss",
    "align",
    "information_less",
    "kjem",
    "salient_teacher",
    "uniformity",
]



def _sq_dists(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``(N, M)`` from explicit differences."""
    y = x if y is None else y
    return torch.cdist(x, y, p=2.0, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, D) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _check_labels(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return ``labels`` as a boolean target mask; both groups must be present."""
    if z.ndim != 2 or labels.ndim != 1 or labels.shape[0] != z.shape[0]:
        raise ValueError(f"expected (N, D) embeddings and (N,) labels, got {tuple(z.shape)} and {tuple(labels.shape)}")
    is_target = labels.bool() if labels.dtype == torch.bool else labels > 0.5
    n_target = int(is_target.sum())
    if n_target == 0 or n_target == labels.shape[0]:
        missing = "target (label 1)" if n_target == 0 else "background (label 0)"
        raise ValueError(
            f"SepCLR batch of {labels.shape[0]} samples has no {missing} sample; "
            "use a group-balanced sampler so that every batch holds both groups"
        )
    return is_target


def align(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Alignment ``mean_i ||a_i - b_i||^2`` (Wang & Isola 2020)."""
    _check_pair(a, b)
    return (a - b).pow(2).sum(dim=1).mean()


def uniformity(z: torch.Tensor) -> torch.Tensor:
    """Uniformity ``log mean_{i<j} exp(-||z_i - z_j||^2)`` (Wang & Isola 2020), via logsumexp."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"uniformity needs an (N, D) tensor with N >= 2, got {tuple(z.shape)}")
    n = z.shape[0]
    neg = -_sq_dists(z)
    off_diag = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return torch.logsumexp(neg[off_diag], dim=0) - math.log(n * (n - 1))


def salient_teacher(s: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """The teacher ``s'``: target rows of ``s``, background rows the constant 0 (no gradient)."""
    return torch.where(is_target[:, None], s, torch.zeros((), dtype=s.dtype, device=s.device))


def information_less(s: torch.Tensor, is_target: torch.Tensor) -> torch.Tensor:
    """Information-less term ``mean_{background} ||s||^2`` (background salient vectors -> 0)."""
    return s[~is_target].pow(2).sum(dim=1).mean()


def kjem(c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """k-JEM ``mean_i log mean_j exp(-||c_i-c_j||^2 - ||t_i-t_j||^2)`` (diagonal included).

    Minimising it maximises a kernel estimate of the joint entropy of ``(c, s)`` (SepCLR, Sec. 3).
    """
    if c.ndim != 2 or t.ndim != 2 or c.shape[0] != t.shape[0]:
        raise ValueError(f"expected (N, Dc) and (N, Ds) tensors, got {tuple(c.shape)} and {tuple(t.shape)}")
    logits = -_sq_dists(c) - _sq_dists(t)
    return (torch.logsumexp(logits, dim=1) - math.log(c.shape[0])).mean()


@dataclass
class SepCLRTerms:
    """The weighted parts of the SepCLR objective (each a scalar tensor)."""

    common: torch.Tensor
    salient: torch.Tensor
    infoless: torch.Tensor
    kjem: torch.Tensor
    total: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Terms by name, for logging."""
        return {k: getattr(self, k) for k in ("common", "salient", "infoless", "kjem", "total")}


class AlignmentLoss(_Loss):
    """Alignment of positive pairs ``mean_i ||a_i - b_i||^2``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return align(a, b)


class UniformityLoss(_Loss):
    """Uniformity ``log mean_{i<j} exp(-||z_i - z_j||^2)`` of one set of embeddings."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return uniformity(z)


class SalientUniformityLoss(_Loss):
    """s'-uniformity (SepCLR): uniformity of the teacher whose background rows are 0."""

    def forward(self, s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return uniformity(salient_teacher(s, _check_labels(s, labels)))


class InformationLessLoss(_Loss):
    """Information-less regulariser of SepCLR: ``mean_{background} ||s||^2``."""

    def forward(self, s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return information_less(s, _check_labels(s, labels))


class KJEMLoss(_Loss):
    """k-JEM mutual-information penalty of SepCLR between common ``c`` and teacher salient ``s'``."""

    def forward(self, c: torch.Tensor, s: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return kjem(c, salient_teacher(s, _check_labels(s, labels)))


class SepCLRLoss(_Loss):
    """The full SepCLR objective (Louiset et al., ICLR 2024) on two views.

    ``L = L_common + beta_s * L_salient + beta_reg * L_infoless + lam * L_kjem`` with
    ``L_common = align(c1,c2) + unif(c1) + unif(c2)`` over all samples,
    ``L_salient = align(s1,s2)[targets] + unif(s1') + unif(s2')`` (``s'`` the zero teacher),
    ``L_infoless`` and ``L_kjem`` averaged over the two views.

    Args:
        beta_s: weight of the salient term.
        beta_reg: weight of the information-less term.
        lam: weight of the k-JEM term.
        normalize_common: L2-normalise the common inputs (idempotent on normalised heads).
        gather: all-gather the embeddings across DDP ranks (identity when not distributed).
    """

    def __init__(
        self,
        beta_s: float = 1.0,
        beta_reg: float = 10.0,
        lam: float = 10.0,
        normalize_common: bool = True,
        gather: bool = False,
    ) -> None:
        super().__init__()
        self.beta_s, self.beta_reg, self.lam = float(beta_s), float(beta_reg), float(lam)
        self.normalize_common = normalize_common
        self.gather = gather

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> SepCLRLoss:
        """Build with the ``natural`` or ``medical`` weights."""
        if name not in PRESETS:
            raise ValueError(f"unknown SepCLR preset {name!r}; expected one of {sorted(PRESETS)}")
        beta_s, beta_reg, lam = PRESETS[name]
        return cls(beta_s=beta_s, beta_reg=beta_reg, lam=lam, **kwargs)

    def _gathered(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.gather:
            return tensors
        from medcl.engine.distributed import gather_with_grad

        return tuple(gather_with_grad(t) for t in tensors)

    def terms(
        self, c1: torch.Tensor, c2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, labels: torch.Tensor
    ) -> SepCLRTerms:
        """All (unweighted) terms and the weighted total."""
        _check_pair(c1, c2)
        _check_pair(s1, s2)
        if c1.shape[0] != s1.shape[0]:
            raise ValueError(f"common {tuple(c1.shape)} and salient {tuple(s1.shape)} have different batch sizes")
        c1, c2, s1, s2, labels = self._gathered(c1, c2, s1, s2, labels.to(s1.dtype))
        is_target = _check_labels(s1, labels)
        if self.normalize_common:
            c1, c2 = F.normalize(c1, dim=1), F.normalize(c2, dim=1)
        t1, t2 = salient_teacher(s1, is_target), salient_teacher(s2, is_target)
        common = align(c1, c2) + uniformity(c1) + uniformity(c2)
        salient = align(s1[is_target], s2[is_target]) + uniformity(t1) + uniformity(t2)
        infoless = (information_less(s1, is_target) + information_less(s2, is_target)) / 2
        jem = (kjem(c1, t1) + kjem(c2, t2)) / 2
        total = common + self.beta_s * salient + self.beta_reg * infoless + self.lam * jem
        return SepCLRTerms(common, salient, infoless, jem, total)

    def forward(  # noqa: D102
        self, c1: torch.Tensor, c2: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return self.terms(c1, c2, s1, s2, labels).total
