"""Prototype layers of ProtoECGNet (Sethi et al., 2025, "ProtoECGNet: case-based interpretable deep
learning for multi-label ECG classification with contrastive learning").

Three kinds of prototypes share one base class (:class:`PrototypeLayer`):

- :class:`GlobalPrototypes1D`: one vector per prototype compared with the time-pooled feature
  vector by plain cosine similarity (rhythm branch).
- :class:`TemporalPrototypes2D`: prototypes of ``length`` time steps slid over a ``(B, D, 1, T)``
  feature map; each window gets the reference's *scaled* cosine
  ``floor(sqrt(D * length)) / length * cos`` and the windows are pooled (mean as in the reference,
  or max). With ``length == T`` the prototypes span the whole map (global branch).

Every layer owns its prototype-to-class identity matrix and a bias-free linear classifier
initialised to +1 for a prototype's own class and -0.5 for the others.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GlobalPrototypes1D",
    "PrototypeLayer",
    "TemporalPrototypes2D",
    "class_identity",
    "init_classifier",
]

REFERENCE_EPS = 1e-4
"""Epsilon under the square roots of the reference's 2D norms (``sqrt(sum x^2 + eps)``)."""


def class_identity(num_classes: int, per_class: int) -> torch.Tensor:
    """Prototype-to-class identity matrix ``(num_classes * per_class, num_classes)``.

    Prototype ``j`` belongs to class ``j // per_class`` (the reference's ordering).
    """
    return torch.eye(num_classes).repeat_interleave(per_class, dim=0)


def init_classifier(weight: torch.Tensor, identity: torch.Tensor, own: float = 1.0, other: float = -0.5) -> None:
    """Set a ``(C, P)`` classifier weight to ``own`` where prototype p belongs to class c, else ``other``."""
    with torch.no_grad():
        weight.copy_(own * identity.T + other * (1.0 - identity.T))


class PrototypeLayer(nn.Module):
    """Class-specific prototypes, their similarities to features, and the linear classifier.

    Args:
        num_classes: number of classes C of the branch.
        per_class: prototypes per class (P = C * per_class).
        shape: shape of one prototype (without the leading P).

    Subclasses implement :meth:`window_similarities` ``(B, P, W)``; :meth:`pool` reduces the
    windows to ``(B, P)``.
    """

    def __init__(self, num_classes: int, per_class: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        if num_classes < 1 or per_class < 1:
            raise ValueError(f"num_classes ({num_classes}) and per_class ({per_class}) must be >= 1")
        self.num_classes = num_classes
        self.per_class = per_class
        self.num_prototypes = num_classes * per_class
        self.prototypes = nn.Parameter(torch.randn(self.num_prototypes, *shape))
        self.register_buffer("identity", class_identity(num_classes, per_class))
        self.classifier = nn.Linear(self.num_prototypes, num_classes, bias=False)
        init_classifier(self.classifier.weight, self.identity)

    def window_similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Similarity of every prototype to every window of ``features``: ``(B, P, W)``."""
        raise NotImplementedError

    def pool(self, window_sims: torch.Tensor) -> torch.Tensor:
        """Reduce ``(B, P, W)`` window similarities to ``(B, P)``."""
        return window_sims.mean(dim=-1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return ``{"similarities": (B, P), "logits": (B, C)}``."""
        sims = self.pool(self.window_similarities(features))
        return {"similarities": sims, "logits": self.classifier(sims)}

    def window_segment(self, features: torch.Tensor, sample: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Segments ``(K, *prototype_shape)`` of ``features`` at rows ``sample`` (K,), windows ``window`` (K,)."""
        raise NotImplementedError


class GlobalPrototypes1D(PrototypeLayer):
    """Global prototypes on pooled feature vectors, plain cosine similarity (reference 1D branch).

    Args:
        num_classes: classes of the branch.
        per_class: prototypes per class (5 in the paper's rhythm branch).
        dim: feature dimension D (512 in the paper).
    """

    def __init__(self, num_classes: int, per_class: int, dim: int) -> None:
        super().__init__(num_classes, per_class, (dim,))

    def window_similarities(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.prototypes.shape[1]:
            raise ValueError(f"features must be (B, {self.prototypes.shape[1]}); got {tuple(features.shape)}")
        sims = F.normalize(features, dim=1) @ F.normalize(self.prototypes, dim=1).T
        return sims.unsqueeze(-1)

    def window_segment(self, features: torch.Tensor, sample: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        return features[sample]


class TemporalPrototypes2D(PrototypeLayer):
    """Prototypes of ``length`` time steps over a ``(B, D, 1, T)`` map, scaled cosine per window.

    The reference similarity of window ``x`` and prototype ``p`` (both ``D x length``) is
    ``floor(sqrt(D * length)) / length * <x, p> / (sqrt(|x|^2 + eps) * sqrt(|p|^2 + eps))`` with
    ``eps = 1e-4``: 13 x cosine for D = 512, length = 3; 4 x cosine for length = 32. The windows
    are computed at once with ``conv1d`` (dot products) and a box filter (window norms).

    Args:
        num_classes: classes of the branch.
        per_class: prototypes per class (18 partial / 7 global in the paper).
        dim: feature dimension D.
        length: prototype length in feature time steps (3 partial; T for global prototypes).
        pooling: ``"mean"`` over windows (reference) or ``"max"`` (ProtoPNet-style, an option).
    """

    def __init__(
        self,
        num_classes: int,
        per_class: int,
        dim: int,
        length: int,
        pooling: Literal["mean", "max"] = "mean",
    ) -> None:
        if pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max'; got {pooling!r}")
        super().__init__(num_classes, per_class, (dim, 1, length))
        self.length = length
        self.pooling = pooling
        self.scale = math.floor(math.sqrt(dim * length)) / length

    def pool(self, window_sims: torch.Tensor) -> torch.Tensor:
        return window_sims.amax(dim=-1) if self.pooling == "max" else window_sims.mean(dim=-1)

    def window_similarities(self, features: torch.Tensor) -> torch.Tensor:
        dim = self.prototypes.shape[1]
        if features.ndim != 4 or features.shape[1] != dim or features.shape[2] != 1:
            raise ValueError(f"features must be (B, {dim}, 1, T); got {tuple(features.shape)}")
        if features.shape[-1] < self.length:
            raise ValueError(f"feature map has {features.shape[-1]} time steps; prototypes need {self.length}")
        x = features.squeeze(2)  # (B, D, T)
        protos = self.prototypes.squeeze(2)  # (P, D, L)
        dots = F.conv1d(x, protos)  # (B, P, W)
        ones = x.new_ones(1, 1, self.length)
        x_sq = F.conv1d(x.square().sum(dim=1, keepdim=True), ones)  # (B, 1, W)
        p_sq = protos.square().sum(dim=(1, 2))  # (P,)
        norms = torch.sqrt(x_sq + REFERENCE_EPS) * torch.sqrt(p_sq + REFERENCE_EPS)[:, None]
        return self.scale * dots / norms

    def window_segment(self, features: torch.Tensor, sample: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        windows = features.squeeze(2).unfold(-1, self.length, 1)  # (B, D, W, L), a view
        return windows[sample, :, window, :].unsqueeze(2)  # (K, D, 1, L)
