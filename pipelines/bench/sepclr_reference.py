"""The reference side of ``medcl bench sepclr``: SepCLR's training step as the official code runs it.

Re-implemented in plain PyTorch (+ kornia, which the official augmentation uses), with no medcl
code, from the official CIFAR-10-MNIST script of Louiset et al. (ICLR 2024): two torchvision-layout
ResNet-18 encoders with the CIFAR stem (3x3 stride-1 first conv, no max-pool; SimCLR Sec. B.9),
``fc`` to ``d = 32``, projection heads ``Linear(32,128)-BN-ReLU-Linear(128,32)``; the loss written as
the official ``losses.py`` does (``pdist``/``cdist`` then ``exp().mean().log()``, the teacher made by
``clone`` and masked assignment, ``loss.item()`` each step); Adam (lr 3e-4); and the official
augmentation module (kornia ``RandomResizedCrop`` to 24 px, scale 0.2-1, horizontal flip, colour
jitter applied to the whole batch with p = 0.8, greyscale p = 0.2). Its state dict maps onto
:class:`medcl.nets.sepclr.SepCLRNet` by :func:`to_medcl_state` (same layers, other names), so a test
can check that both steps compute the same loss on the same weights and batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OfficialAugmentation", "ReferenceEncoder", "reference_loss", "reference_step", "to_medcl_state"]


class _BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock``."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class _ResNet18Cifar(nn.Module):
    """torchvision ``resnet18`` with ``conv1 = Conv2d(3, 64, 3, 1, 1)``, ``maxpool = Identity`` and ``fc`` to ``dim``."""

    def __init__(self, dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(_BasicBlock(cin, w, stride), _BasicBlock(w, w, 1)))
            cin = w
        self.fc = nn.Linear(512, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _projector(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, dim))


class ReferenceEncoder(nn.Module):
    """The official ``Encoder``: returns ``(common, common_head, salient, salient_head)``."""

    def __init__(self, common_dim: int = 32, salient_dim: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        self.common_enc = _ResNet18Cifar(common_dim, in_channels)
        self.specific_enc = _ResNet18Cifar(salient_dim, in_channels)
        self.common_projector = _projector(common_dim)
        self.specific_projector = _projector(salient_dim)

    def forward(self, x: torch.Tensor):
        common, salient = self.common_enc(x), self.specific_enc(x)
        return common, self.common_projector(common), salient, self.specific_projector(salient)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1, p=2)


def _align(x: torch.Tensor, y: torch.Tensor, alpha: int = 2) -> torch.Tensor:
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def _uniform(x: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def _joint_entropy(c: torch.Tensor, s: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    s_sim = torch.cdist(s, s, p=2.0).pow(2).mul(-1 / (2 * tau)).exp()
    c_sim = torch.cdist(c, c, p=2.0).pow(2).mul(-1 / (2 * tau)).exp()
    return (s_sim * c_sim).mean(-1).log().mean()


def reference_loss(encoder: ReferenceEncoder, view1, view2, labels, beta_s=1000.0, beta_reg=1000.0, lam=10.0):
    """The official SepCLR loss of one batch (natural-image weights by default)."""
    _, common_head_1, _, specific_head_1 = encoder(view1)
    _, common_head_2, _, specific_head_2 = encoder(view2)
    teacher_1, teacher_2 = torch.clone(specific_head_1), torch.clone(specific_head_2)
    teacher_1[labels == 0, :] = 0.0
    teacher_2[labels == 0, :] = 0.0
    cm_loss = _align(_norm(common_head_1), _norm(common_head_2)) + 2.0 * (
        _uniform(_norm(common_head_2)) + _uniform(_norm(common_head_1))
    ) / 2.0
    sp_loss = _align(specific_head_1[labels == 1], specific_head_2[labels == 1]) + 2.0 * (
        _uniform(teacher_2) + _uniform(teacher_1)
    ) / 2.0
    sp_reg = (_align(teacher_1[labels == 0], specific_head_1[labels == 0])
              + _align(teacher_2[labels == 0], specific_head_2[labels == 0])) / 2.0  # fmt: skip
    jem = (_joint_entropy(_norm(common_head_1), teacher_1) + _joint_entropy(_norm(common_head_2), teacher_2)) / 2.0
    return cm_loss + beta_s * sp_loss + beta_reg * sp_reg + lam * jem


def reference_step(encoder: ReferenceEncoder, optimizer: torch.optim.Optimizer, view1, view2, labels) -> float:
    """One official training step (the views are already augmented): loss, backward, Adam, ``loss.item()``."""
    loss = reference_loss(encoder, view1, view2, labels)
    loss.backward()
    value = loss.item()
    optimizer.step()
    optimizer.zero_grad()
    return value


class _RandomApply(nn.Module):
    """torchvision ``RandomApply``: the wrapped module on the whole input with probability ``p``."""

    def __init__(self, module: nn.Module, p: float) -> None:
        super().__init__()
        self.module, self.p = module, p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) if torch.rand(1).item() < self.p else x


class OfficialAugmentation(nn.Module):
    """The official ``CifarMNISTDataAugmentation`` (kornia on a batch tensor, crop to ``size``)."""

    def __init__(self, size: int = 24) -> None:
        super().__init__()
        import kornia.augmentation as K

        s = 0.5
        jitter = _RandomApply(K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), p=0.8)
        self.transforms = nn.Sequential(
            K.RandomResizedCrop((size, size), scale=(0.2, 1)), K.RandomHorizontalFlip(p=0.5),
            nn.Sequential(jitter, K.RandomGrayscale(p=0.2)),
        )  # fmt: skip

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transforms(x)


_PREFIXES = {"common_enc.": "common_encoder.", "specific_enc.": "salient_encoder.",
             "common_projector.": "common_head.", "specific_projector.": "salient_head."}  # fmt: skip


def to_medcl_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference encoder's state dict under :class:`medcl.nets.sepclr.SepCLRNet`'s names.

    MONAI's 1x1 shortcut convolutions carry a bias that torchvision's lack: it is set to zero (the
    same map; a BatchNorm follows it in both)."""
    out = {}
    for key, value in state.items():
        prefix = next(p for p in _PREFIXES if key.startswith(p))
        out[_PREFIXES[prefix] + key[len(prefix) :]] = value
        if key.endswith("downsample.0.weight"):
            out[_PREFIXES[prefix] + key[len(prefix) : -len("weight")] + "bias"] = value.new_zeros(value.shape[0])
    return out
