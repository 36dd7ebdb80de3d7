"""Reference side of ``medcl bench ecg``: the official ProtoECGNet joint-stage training step, in plain PyTorch.

Re-implemented after the authors' code (Sethi et al., 2025; github.com/sahilsethi0105/protoecgnet,
``src/backbones.py``, ``src/proto_models1D.py``, ``src/proto_models2D.py``,
``src/training_functions.py``) so that the benchmark can time it beside medcl's step in the same
process. Nothing here imports medcl: the backbone is the torchvision-style ResNet-18 (1D for the
rhythm branch; 2D with a first convolution spanning the 12 leads for the morphology / global
branches), the prototype layer computes the scaled cosine **window by window in a Python loop**
as the reference does, the loss is ``prototype_loss1d`` / ``prototype_loss2d`` (BCE with positive
weights, clustering, separation, sparsity, diversity, co-occurrence contrastive, with the masks
rebuilt every step), and the optimiser is Adam over ``model.parameters()`` (the joint stage).

Left out of the timed step because they only slow the reference: the six ``print`` calls of
the loss functions and Lightning's ``self.log``. Kept: the per-step NaN/Inf check on the logits
and the copy of the probabilities to the host, as in ``ECGTrainer.training_step``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-4


class BasicBlock(nn.Module):
    """ResNet basic block, 1D or 2D (torchvision's ``BasicBlock`` / the reference's ``BasicBlock1D``)."""

    def __init__(self, dims: int, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv1 = conv(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = bn(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(conv(inplanes, planes, 1, stride, bias=False), bn(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += residual
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor: ``dims=1`` gives ``(B, 512)`` (time-averaged), ``dims=2`` the
    ``(B, 512, 1, T')`` map of the ``(B, 1, 12, N)`` input (dropout after the third stage)."""

    def __init__(self, dims: int, leads: int = 12, dropout: float = 0.0) -> None:
        super().__init__()
        self.dims = dims
        if dims == 1:
            self.conv1 = nn.Conv1d(leads, 64, 7, 2, 3, bias=False)
            self.bn1, self.maxpool = nn.BatchNorm1d(64), nn.MaxPool1d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(1, 64, (leads, 7), (1, 2), (0, 3), bias=False)
            self.bn1, self.maxpool = nn.BatchNorm2d(64), nn.MaxPool2d(3, 2, 1)
        self.relu = nn.ReLU(inplace=True)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, planes in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(dims, inplanes, planes, stride),
                                                     BasicBlock(dims, planes, planes)))
            inplanes = planes
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.layer4(self.dropout(x) if self.dims == 2 else x)
        return torch.flatten(F.adaptive_avg_pool1d(x, 1), 1) if self.dims == 1 else x


def prototype_class_identity(num_classes: int, per_class: int) -> torch.Tensor:
    """``(P, C)``: prototype ``j`` belongs to class ``j // per_class`` (no joint prototypes)."""
    identity = torch.zeros(num_classes * per_class, num_classes)
    for j in range(num_classes):
        identity[j * per_class : (j + 1) * per_class, j] = 1
    return identity


class ReferenceProtoNet(nn.Module):
    """``ProtoECGNet1D`` (``dims=1``, global prototypes, plain cosine) or ``ProtoECGNet2D``
    (``dims=2``, prototypes of ``proto_time_len`` steps, scaled cosine per window, mean over
    windows) with ``latent_space_type="arc"`` and ``add_on_layers_type="linear"``.

    ``forward`` returns ``(logits, marginless_logits, prototype_activations)`` as the reference.
    """

    def __init__(self, dims: int, num_classes: int, per_class: int, cooccurrence: torch.Tensor,
                 proto_dim: int = 512, proto_time_len: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.dims = dims
        self.num_classes = num_classes
        self.num_prototypes = num_classes * per_class
        self.proto_time_len = proto_time_len
        shape = (self.num_prototypes, proto_dim) if dims == 1 else (self.num_prototypes, proto_dim, 1, proto_time_len)
        self.prototype_shape = shape
        self.input_vector_length = int((proto_dim * proto_time_len) ** 0.5)
        self.label_cooccurrence = cooccurrence
        self.feature_extractor = ResNet18(dims, dropout=dropout)
        self.prototype_vectors = nn.Parameter(torch.randn(*shape), requires_grad=True)
        self.ones = nn.Parameter(torch.ones_like(self.prototype_vectors), requires_grad=False)  # unused, as there
        self.classifier = nn.Linear(self.num_prototypes, num_classes, bias=False)
        self.register_buffer("prototype_class_identity", prototype_class_identity(num_classes, per_class))
        if dims == 1:
            self.add_on_layers = nn.Sequential(nn.Linear(proto_dim, proto_dim), nn.ReLU(),
                                               nn.Linear(proto_dim, proto_dim), nn.Sigmoid())
        else:
            self.add_on_layers = nn.Sequential(nn.Conv2d(proto_dim, proto_dim, 1), nn.ReLU(),
                                               nn.Conv2d(proto_dim, proto_dim, 1), nn.Sigmoid())
            for m in self.add_on_layers:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.constant_(m.bias, 0)
        positive = self.prototype_class_identity.T
        self.classifier.weight.data.copy_(1.0 * positive - 0.5 * (1 - positive))

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.add_on_layers(self.feature_extractor(x))

    def cos_activation(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1:
            return torch.mm(F.normalize(x, p=2, dim=1), F.normalize(self.prototype_vectors, p=2, dim=1).T)
        normalizing_factor = (self.prototype_shape[-2] * self.prototype_shape[-1]) ** 0.5
        batch_size, _, _, time_dim = x.shape
        num_windows = time_dim - self.proto_time_len + 1
        activations = torch.zeros((batch_size, self.num_prototypes, num_windows), device=x.device, dtype=x.dtype)
        prototypes = self.prototype_vectors.squeeze(2)
        proto_norm = torch.sqrt(torch.sum(prototypes**2, dim=(1, 2), keepdim=True) + EPSILON)
        prototypes_scaled = prototypes / proto_norm / normalizing_factor
        for i in range(num_windows):
            segment = x[:, :, 0, i : i + self.proto_time_len]
            seg_norm = torch.sqrt(torch.sum(segment**2, dim=(1, 2), keepdim=True) + EPSILON)
            segment_scaled = self.input_vector_length * segment / seg_norm / normalizing_factor
            activations[:, :, i] = torch.matmul(segment_scaled.reshape(batch_size, -1),
                                                prototypes_scaled.reshape(self.num_prototypes, -1).T)
        return activations

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        activations = self.cos_activation(self.conv_features(x))
        if self.dims == 2:
            activations = torch.mean(activations, dim=-1)
        logits = self.classifier(activations)
        return logits, logits, activations


def prototype_loss(logits: torch.Tensor, y_true: torch.Tensor, model: ReferenceProtoNet,
                   similarity_scores: torch.Tensor, class_weights: torch.Tensor | None, lam_clst: float = 0.004,
                   lam_sep: float = 0.0004, lam_spars: float = 0.0, lam_div: float = 250.0,
                   lam_cnrst: float = 300.0) -> torch.Tensor:
    """``prototype_loss1d`` / ``prototype_loss2d`` of the reference (identical apart from how the
    diversity term is written), without the prints."""
    y_true = y_true.to(logits.dtype)  # .float() there; the dtype of the logits here (float64 checks)
    correct = model.prototype_class_identity.unsqueeze(0).expand(y_true.shape[0], -1, -1)
    correct = correct * y_true.unsqueeze(1)
    correct_act, _ = torch.max(similarity_scores.unsqueeze(-1) * correct, dim=1)
    wrong_act, _ = torch.max(similarity_scores.unsqueeze(-1) * (1 - correct), dim=1)
    clst_loss = -torch.mean(correct_act)
    sep_loss = torch.mean(wrong_act)
    spars_loss = torch.mean(torch.clamp(similarity_scores, min=0).sum(dim=1))
    p_norm = F.normalize(model.prototype_vectors.view(model.num_prototypes, -1), p=2, dim=1)
    eye = torch.eye(model.num_prototypes, device=p_norm.device, dtype=p_norm.dtype)
    div_loss = ((torch.matmul(p_norm, p_norm.T) - eye) ** 2).sum() / (model.num_prototypes**2)
    prototypes_norm = F.normalize(model.prototype_vectors.view(model.num_prototypes, -1), p=2, dim=1)
    sim_matrix = torch.clamp(torch.mm(prototypes_norm, prototypes_norm.T), min=-1 + 1e-6, max=1 - 1e-6)
    p_assign = model.prototype_class_identity.to(sim_matrix.dtype)
    pos_mask = torch.matmul(torch.matmul(p_assign, model.label_cooccurrence.to(sim_matrix.dtype)), p_assign.T)
    neg_mask = 1 - pos_mask
    pos_loss = torch.sum(sim_matrix * (pos_mask / (pos_mask.sum() + 1e-6)))
    neg_loss = torch.sum(sim_matrix * (neg_mask / (neg_mask.sum() + 1e-6)))
    cnrst_loss = -(pos_loss - neg_loss) / (model.num_prototypes**0.5)
    classification_loss = F.binary_cross_entropy_with_logits(logits, y_true, pos_weight=class_weights)
    return (classification_loss + lam_clst * clst_loss + lam_sep * sep_loss + lam_spars * spars_loss
            + lam_div * div_loss + lam_cnrst * cnrst_loss)


def jaccard_cooccurrence(labels: torch.Tensor) -> torch.Tensor:
    """Label co-occurrence of the reference's ``label_co.py``: ``|a & b| / |a | b|``."""
    y = labels.float()
    inter = y.T @ y
    counts = y.sum(dim=0)
    return inter / (counts[None, :] + counts[:, None] - inter).clamp(min=1e-6)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """BCE positive weights of the reference's data loader: ``(total positives - n_c) / n_c``."""
    counts = labels.float().sum(dim=0)
    return (counts.sum() - counts) / counts.clamp(min=1.0)


def make_step(model: ReferenceProtoNet, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
              lr: float = 1e-4) -> Callable[[], torch.Tensor]:
    """One joint-stage optimiser step as ``ECGTrainer`` runs it (forward, loss, NaN check, host copy
    of the probabilities, zero_grad, backward, Adam over all parameters); returns the loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=0.0)

    def step() -> torch.Tensor:
        logits, _, sims = model(x)
        loss = prototype_loss(logits, y, model, sims, weights)
        if torch.isnan(logits).any() or torch.isinf(logits).any():
            print("[DEBUG] Detected NaNs or Infs in logits!")
        torch.sigmoid(logits).detach().cpu().numpy()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach()

    return step
