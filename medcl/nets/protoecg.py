"""ProtoECGNet: three prototype branches (rhythm / morphology / global) and a fusion layer.

Sethi et al., 2025, "ProtoECGNet: case-based interpretable deep learning for multi-label ECG
classification with contrastive learning". Backbones are MONAI ``ResNet`` (basic blocks,
layers [2, 2, 2, 2] = ResNet-18), no pretrained weights:

- rhythm: 1D ResNet over the 12 leads, global average over time, add-on MLP ending in a sigmoid,
  global prototypes (plain cosine);
- morphology: 2D ResNet on the ``(1, 12, T)`` "image" whose first convolution spans all 12 leads
  (kernel ``(12, 7)``, stride ``(1, 2)``), add-on 1x1 convolutions ending in a sigmoid, partial
  prototypes of 3 feature steps (scaled cosine, pooled over windows);
- global: same 2D backbone, prototypes spanning the whole feature map.

Fusion is a linear layer (with bias) over the concatenated similarities of the three branches.

Options of the published runs: dropout after the third ResNet stage (0.35 in the reference's
commands), input z-scoring per record and lead (``normalize="zscore"``, done inside
:meth:`ProtoBranch.features` so that training, projection, predict, report and attribution all
see the same input), and 2D branches initialised from a torchvision ResNet-18 state dict
(:func:`load_resnet18_2d`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from monai.networks.nets import ResNet
from torch import nn

from medcl.errors import MedclError
from medcl.nets.prototype import GlobalPrototypes1D, PrototypeLayer, TemporalPrototypes2D

__all__ = ["BRANCHES", "NORMALIZE", "OneRowConv2d", "ProtoBranch", "ProtoECGNet", "branch_contributions",
           "branch_probabilities", "build_branch", "fast_paths", "head_probabilities", "load_resnet18_2d",
           "one_row_convs", "plain_paths", "resnet_backbone", "zscore_leads"]

NORMALIZE: tuple[str, ...] = ("none", "zscore")

BRANCHES: tuple[str, ...] = ("rhythm", "morphology", "global")
"""Branch names, in the order their similarities are concatenated for fusion."""


def resnet_backbone(spatial_dims: int, width: int, layers: Sequence[int], in_channels: int) -> ResNet:
    """MONAI basic-block ResNet without classifier head; ``width`` channels in the first stage."""
    return ResNet(
        block="basic",
        layers=list(layers),
        block_inplanes=[width, 2 * width, 4 * width, 8 * width],
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        feed_forward=False,
    )


def zscore_leads(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Z-score each lead of each record over time: ``(x - mean) / std`` along the last axis.

    A flat lead (std below ``eps``) becomes zeros instead of dividing by ~0.
    """
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True, unbiased=False)
    return (x - mean) / std.clamp(min=eps)


def add_stage_dropout(stage: nn.Module, p: float) -> None:
    """Dropout on the output of a ResNet stage (a forward hook, so state-dict keys do not change)."""
    if p > 0:
        stage.register_forward_hook(lambda mod, _inp, out: F.dropout(out, p, mod.training))


class OneRowConv2d(nn.Conv2d):
    """A ``Conv2d`` that skips the kernel rows which only ever meet zero padding.

    After the first convolution of a 2D branch (kernel ``(12, 7)`` over the 12 leads) every feature
    map has height 1, so a ``3 x 3`` convolution with padding 1 multiplies its top and bottom kernel
    rows by the zero padding only: its output is exactly that of the middle row alone, a ``1 x 3``
    convolution with a third of the work, and the gradients of the two other rows are exactly zero
    either way. On a one-row input whose padding leaves one output row this class convolves with
    that one row (a view of the same parameter); any other input takes the plain ``Conv2d`` path.
    State-dict keys, shapes and outputs are unchanged (up to float summation order).
    """

    def _one_row(self, x: torch.Tensor) -> bool:
        kh, ph = self.kernel_size[0], self.padding[0]
        return (x.ndim == 4 and x.shape[2] == 1 and kh > 1 and isinstance(ph, int) and ph < kh
                and self.padding_mode == "zeros" and self.dilation[0] == 1
                and 0 <= 1 + 2 * ph - kh < self.stride[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._one_row(x):
            return super().forward(x)
        ph = self.padding[0]
        args = ((1, self.stride[1]), (0, self.padding[1]), (1, self.dilation[1]), self.groups)
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return _OneRowConv.apply(x, self.weight, self.bias, ph, *args)
        return F.conv2d(x, self.weight[:, :, ph : ph + 1, :], self.bias, *args)


class _OneRowConv(torch.autograd.Function):
    """``conv2d`` with kernel row ``row`` of ``weight`` whose weight gradient is written straight
    into a zero tensor of the parameter's own layout (autograd's slice backward would fill a
    default-layout tensor, which accumulating into a channels-last parameter then copies again)."""

    @staticmethod
    def forward(ctx, x, weight, bias, row, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (row, stride, padding, dilation, groups, bias is not None)
        return F.conv2d(x, weight[:, :, row : row + 1, :], bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        row, stride, padding, dilation, groups, has_bias = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        w = weight[:, :, row : row + 1, :]
        gx, gw_row, gb = torch.ops.aten.convolution_backward(
            grad, x, w, [w.shape[0]] if has_bias else None, list(stride), list(padding), list(dilation), False,
            [0, 0], groups, [need_x, need_w, has_bias and need_b])
        gw = None
        if need_w:
            gw = torch.zeros_like(weight)  # the parameter's layout (see one_row_layout)
            gw[:, :, row : row + 1, :].copy_(gw_row)
        return gx, gw, gb, None, None, None, None, None


def one_row_layout(conv: nn.Conv2d) -> None:
    """Store a :class:`OneRowConv2d` weight ``(O, I, kh, kw)`` kernel-row outermost, channels-last
    within a row (strides ``(kw I, 1, O kw I, I)``): each kernel row is then a contiguous
    channels-last ``(O, I, 1, kw)`` tensor that oneDNN takes without a reorder, and the weight
    gradient is built in the same layout. Same values; the state dict is unchanged."""
    with torch.no_grad():
        conv.weight.data = conv.weight.data.permute(2, 0, 3, 1).contiguous().permute(1, 3, 0, 2)


def one_row_convs(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn every plain ``Conv2d`` of ``module`` into a :class:`OneRowConv2d` (``enabled=False``:
    back to plain ``Conv2d``, the full-kernel path), in place; parameters are untouched."""
    for m in module.modules():
        if enabled and type(m) is nn.Conv2d:
            m.__class__ = OneRowConv2d
        elif not enabled and type(m) is OneRowConv2d:
            m.__class__ = nn.Conv2d
    return module


class ResNet2DMap(nn.Module):
    """2D ResNet returning the ``(B, 8w, 1, T')`` feature map; the first conv spans all leads.

    Args:
        leads: number of leads (height of the input "image").
        width: channels of the first stage (64 for ResNet-18).
        layers: blocks per stage.

    Its convolutions are plain ``Conv2d``; :func:`fast_paths` opts in to :class:`OneRowConv2d`.
    """

    def __init__(self, leads: int, width: int, layers: Sequence[int]) -> None:
        super().__init__()
        self.net = resnet_backbone(2, width, layers, 1)
        self.net.conv1 = nn.Conv2d(1, width, kernel_size=(leads, 7), stride=(1, 2), padding=(0, 3), bias=False)
        self.out_channels = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.act(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))


class _Conv1dOnRows(nn.Conv1d):
    """A ``Conv1d`` that also takes ``(B, C, 1, T)`` input, computed as a 2D convolution with the
    same (unsqueezed) weight: oneDNN's channels-last 2D kernels are faster on CPU than its 1D ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            return super().forward(x)
        return F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.padding[0]),
                        (1, self.dilation[0]), self.groups)


class _BatchNormOnRows(nn.BatchNorm1d):
    """``BatchNorm1d`` accepting ``(B, C, 1, T)`` too (the statistics are the same: per channel)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input (got {x.dim()}D input)")


class _MaxPool1dOnRows(nn.MaxPool1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            return super().forward(x)
        return F.max_pool2d(x, (1, self.kernel_size), (1, self.stride), (0, self.padding), (1, self.dilation),
                            self.ceil_mode)


class _AvgPool1dOnRows(nn.AdaptiveAvgPool1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) if x.ndim != 4 else F.adaptive_avg_pool2d(x, (1, self.output_size))


_ON_ROWS = {nn.Conv1d: _Conv1dOnRows, nn.BatchNorm1d: _BatchNormOnRows, nn.MaxPool1d: _MaxPool1dOnRows,
            nn.AdaptiveAvgPool1d: _AvgPool1dOnRows}


def rows_layout(backbone: nn.Module) -> nn.Module:
    """Let a 1D backbone run on ``(B, C, 1, T)`` channels-last input, in place: its Conv1d /
    BatchNorm1d / MaxPool1d / AdaptiveAvgPool1d modules get subclasses that also accept 4D input.
    Parameters, state-dict keys and shapes are unchanged; 3D input still works as before.

    The convolution weights ``(O, I, K)`` are stored input-channel fastest (strides ``(I K, 1, I)``),
    so that ``weight.unsqueeze(2)`` already is a channels-last ``(O, I, 1, K)`` tensor: oneDNN then
    needs no weight reorder in the forward and backward pass, and the weight gradient arrives in the
    parameter's own layout (no copy when it is accumulated)."""
    for module in backbone.modules():
        if type(module) in _ON_ROWS:
            module.__class__ = _ON_ROWS[type(module)]
        if isinstance(module, _Conv1dOnRows):
            with torch.no_grad():
                module.weight.data = module.weight.data.transpose(1, 2).contiguous().transpose(1, 2)
    return backbone


def fast_paths(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Opt in to the one-row convolutions of the 2D branches, in place: every ``Conv2d`` of each
    :class:`ResNet2DMap` in ``module`` becomes a :class:`OneRowConv2d`, its weight in
    :func:`one_row_layout` where the branch is channels-last already (:func:`channels_last_branch`
    lays out the others). ``enabled=False`` undoes it (plain ``Conv2d``, channels-last weights).

    Off by default: on a 2-core CPU (2 threads, batch 32, training step) the one-row path was
    slower than the plain convolution for the morphology and global branches (74 / 105 against
    88 / 127 samples/s; ``medcl bench ecg --parts train`` shows both). Same parameters, state
    dict and maths either way (outputs up to float summation order)."""
    with torch.no_grad():
        for backbone in [m for m in module.modules() if isinstance(m, ResNet2DMap)]:
            for m in backbone.net.modules():
                if enabled and type(m) is nn.Conv2d:
                    one_row_convs(m)
                    if m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous():
                        one_row_layout(m)
                elif not enabled and type(m) is OneRowConv2d:
                    if not m.weight.is_contiguous():
                        m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
                    one_row_convs(m, enabled=False)
    return module


def plain_paths(module: nn.Module) -> nn.Module:
    """Undo :func:`fast_paths` and the rows weight layout of :func:`rows_layout` in place (the
    step as it ran before them): same parameters and outputs, for equivalence tests and the
    benchmark's before/after comparison."""
    for m in module.modules():
        if isinstance(m, _Conv1dOnRows):
            with torch.no_grad():
                m.weight.data = m.weight.data.contiguous()
    return fast_paths(module, enabled=False)


def _add_on_1d(in_dim: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.Sigmoid())


def _add_on_2d(in_dim: int, dim: int) -> nn.Sequential:
    layers = nn.Sequential(nn.Conv2d(in_dim, dim, 1), nn.ReLU(), nn.Conv2d(dim, dim, 1), nn.Sigmoid())
    for m in layers:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return layers


class ProtoBranch(nn.Module):
    """Backbone -> add-on layers -> prototype layer (with its own classifier).

    ``forward(x)`` takes the ``(B, 12, N)`` signal and returns ``{"similarities", "logits"}``;
    :meth:`features` gives the add-on output that prototypes live in (used by projection).
    """

    def __init__(self, kind: Literal["1d", "2d"], backbone: nn.Module, add_on: nn.Module, prototypes: PrototypeLayer,
                 normalize: str = "none"):
        super().__init__()
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize: {normalize!r} is not one of {NORMALIZE}")
        self.kind = kind
        self.normalize = normalize
        self.backbone = backbone
        self.add_on = add_on
        self.prototypes = prototypes
        self.rows = kind == "1d" and any(isinstance(m, _Conv1dOnRows) for m in backbone.modules())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Latent features: ``(B, D)`` for the 1D branch, ``(B, D, 1, T')`` for 2D branches."""
        if self.normalize == "zscore":
            x = zscore_leads(x)
        if self.kind == "2d":
            x = x.unsqueeze(1)
        elif self.rows:
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, 12, 1, N), see rows_layout
        return self.add_on(self.backbone(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.prototypes(self.features(x))


def _feature_length(backbone: nn.Module, leads: int, n_samples: int) -> int:
    with torch.no_grad():
        return int(backbone(torch.zeros(1, 1, leads, n_samples)).shape[-1])


def build_branch(
    name: str,
    num_classes: int,
    per_class: int,
    *,
    leads: int = 12,
    n_samples: int = 1000,
    width: int = 64,
    layers: Sequence[int] = (2, 2, 2, 2),
    proto_dim: int = 512,
    partial_length: int = 3,
    pooling: Literal["mean", "max"] = "mean",
    dropout: float = 0.0,
    normalize: str = "none",
) -> ProtoBranch:
    """Build one branch: ``"rhythm"`` (1D), ``"morphology"`` (partial 2D) or ``"global"`` (2D)."""
    if name == "rhythm":
        backbone = rows_layout(resnet_backbone(1, width, layers, leads))
        add_stage_dropout(backbone.layer3, dropout)
        return ProtoBranch("1d", backbone, _add_on_1d(8 * width, proto_dim),
                           GlobalPrototypes1D(num_classes, per_class, proto_dim), normalize)
    if name not in ("morphology", "global"):
        raise ValueError(f"unknown branch {name!r}; expected one of {BRANCHES}")
    backbone = ResNet2DMap(leads, width, layers)
    length = partial_length if name == "morphology" else _feature_length(backbone, leads, n_samples)
    add_stage_dropout(backbone.net.layer3, dropout)
    layer = TemporalPrototypes2D(num_classes, per_class, proto_dim, length, pooling=pooling)
    return ProtoBranch("2d", backbone, _add_on_2d(8 * width, proto_dim), layer, normalize)


def load_resnet18_2d(backbone: ResNet2DMap, path: str) -> list[str]:
    """Copy a torchvision ResNet-18 state dict (``resnet18().state_dict()`` saved with ``torch.save``)
    into a 2D branch backbone, as the reference does with ImageNet weights: every layer except
    ``conv1`` (re-created to span the 12 leads) and ``fc``. Returns the copied keys.

    Raises:
        MedclError: the file is missing/unreadable, or its shapes do not fit (needs ``width=64``,
            ``layers=[2, 2, 2, 2]``).
    """
    from medcl.io.checkpoint_file import safe_torch_load

    state = safe_torch_load(path, "ResNet-18 state dict")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    target = backbone.net.state_dict()
    keep = {k: v for k, v in state.items() if not k.startswith(("conv1.", "fc.")) and k in target}
    wrong = [k for k, v in keep.items() if tuple(v.shape) != tuple(target[k].shape)]
    missing = [k for k in target if not k.startswith("conv1.") and k not in keep]
    if wrong or missing:
        bad = (wrong or missing)[:3]
        raise MedclError(f"{path}: not a torchvision ResNet-18 state dict for model.width=64, layers=[2,2,2,2] "
                         f"({'shape mismatch' if wrong else 'missing'}: {', '.join(bad)})")
    backbone.net.load_state_dict(keep, strict=False)
    return sorted(keep)


class ProtoECGNet(nn.Module):
    """Three prototype branches plus a fusion layer over their concatenated similarities.

    Args:
        label_indices: for each branch name, the indices of its labels among the ``num_labels``
            fused outputs (rhythm 16, morphology 52, global 3 of the 71 PTB-XL statements).
        num_labels: outputs of the fusion layer (71).
        per_class: prototypes per class for each branch (5 / 18 / 7 in the paper).
        **branch_kwargs: passed to :func:`build_branch` (``width``, ``layers``, ``proto_dim`` ...).

    ``forward(x)`` with ``x`` ``(B, 12, N)`` returns a dict with ``"<branch>.similarities"``,
    ``"<branch>.logits"`` for each branch and ``"fused"`` (``(B, num_labels)`` logits).
    """

    def __init__(
        self,
        label_indices: dict[str, Sequence[int]],
        num_labels: int,
        per_class: dict[str, int],
        **branch_kwargs,
    ) -> None:
        super().__init__()
        missing = [b for b in BRANCHES if b not in label_indices or b not in per_class]
        if missing:
            raise ValueError(f"label_indices and per_class need every branch; missing {missing}")
        self.branches = nn.ModuleDict(
            {b: build_branch(b, len(label_indices[b]), per_class[b], **branch_kwargs) for b in BRANCHES}
        )
        for b in BRANCHES:
            self.register_buffer(f"labels_{b}", torch.as_tensor(list(label_indices[b]), dtype=torch.long))
        total = sum(self.branches[b].prototypes.num_prototypes for b in BRANCHES)
        self.fusion = nn.Linear(total, num_labels)
        self.num_labels = num_labels

    def label_index(self, branch: str) -> torch.Tensor:
        """Indices of ``branch``'s labels among the fused outputs."""
        return getattr(self, f"labels_{branch}")

    def prototype_offsets(self) -> dict[str, int]:
        """Start of each branch's prototypes in the concatenated similarity vector."""
        offsets, start = {}, 0
        for b in BRANCHES:
            offsets[b] = start
            start += self.branches[b].prototypes.num_prototypes
        return offsets

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for name, branch in self.branches.items():
            res = branch(x)
            out[f"{name}.similarities"] = res["similarities"]
            out[f"{name}.logits"] = res["logits"]
        sims = torch.cat([out[f"{b}.similarities"] for b in BRANCHES], dim=1)
        out["fused"] = self.fusion(sims)
        return out


def branch_probabilities(
    net: ProtoECGNet, out: dict[str, torch.Tensor], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Sigmoid of the branch logits placed into the fused label space ``(B, num_labels)``.

    float64 by default: the fixed +1/-0.5 heads reach ``|logit| > 300``, where float32 sigmoids tie.
    """
    ref = out["fused"]
    full = ref.new_zeros(ref.shape, dtype=dtype)
    for b in BRANCHES:
        full = full.index_copy(1, net.label_index(b), out[f"{b}.logits"].to(dtype))
    return torch.sigmoid(full)


def branch_contributions(net: ProtoECGNet, out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each branch's share of the fused logits on its own labels, as probabilities ``(B, num_labels)``.

    For a label of branch ``b``: ``sigmoid(W[label, protos_b] @ sims_b + bias[label])`` (the fusion
    layer restricted to that branch's prototypes), i.e. what the fused model draws from the branch.
    """
    ref = out["fused"]
    full = ref.new_zeros(ref.shape, dtype=torch.float64)
    offsets = net.prototype_offsets()
    for b in BRANCHES:
        sims = out[f"{b}.similarities"].double()
        idx = net.label_index(b)
        w = net.fusion.weight[idx, offsets[b] : offsets[b] + sims.shape[1]].double()
        full = full.index_copy(1, idx, sims @ w.T + net.fusion.bias[idx].double())
    return torch.sigmoid(full)


def head_probabilities(
    net: ProtoECGNet, out: dict[str, torch.Tensor], head: str, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Probabilities of the model's output head: ``"fusion"`` or ``"branches"`` (in ``dtype``)."""
    return torch.sigmoid(out["fused"].to(dtype)) if head == "fusion" else branch_probabilities(net, out, dtype)


def channels_last_branch(branch: ProtoBranch) -> ProtoBranch:
    """Put a 2D branch's convolution weights in channels-last (NHWC) layout, in place; oneDNN's
    fastest layout on CPU (the weights of :class:`OneRowConv2d`, where :func:`fast_paths` turned
    them on, in :func:`one_row_layout`). The 1D branch is returned unchanged. Same parameters, same maths."""
    if branch.kind == "2d":
        branch.backbone.to(memory_format=torch.channels_last)
        branch.add_on.to(memory_format=torch.channels_last)
        for m in branch.backbone.modules():
            if isinstance(m, OneRowConv2d):
                one_row_layout(m)
    return branch


def adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with its fused kernel (one pass over each parameter: CPU since torch 2.4, CUDA), else
    the for-each implementation: the same update as ``torch.optim.Adam`` up to rounding."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)


class BranchTrainer:
    """One branch's joint-stage step without host syncs: forward, loss, backward, fused Adam.

    Args:
        branch: the branch (its prototype classifier stays frozen, as in the joint stage).
        loss_fn: the branch's :class:`medcl.losses.prototype.PrototypeLoss`.
        lr: learning rate.
        compile: wrap forward + loss in ``torch.compile`` (CPU inductor); any failure at the first
            step falls back to eager with a warning.

    2D branches are put in channels-last layout. :meth:`step` returns the (detached) loss tensor.
    """

    def __init__(self, branch: ProtoBranch, loss_fn: nn.Module, lr: float = 1e-4, weight_decay: float = 0.0,
                 compile: bool = False) -> None:
        self.branch = channels_last_branch(branch)
        self.loss_fn = loss_fn
        params = [p for n, p in branch.named_parameters() if not n.startswith("prototypes.classifier")]
        for p in branch.prototypes.classifier.parameters():
            p.requires_grad_(False)
        self.opt = adam(params, lr, weight_decay)
        self._loss = self._eager_loss
        if compile:
            self._loss = torch.compile(self._eager_loss, dynamic=False)
        self._checked = not compile

    def _eager_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        layer = self.branch.prototypes
        return self.loss_fn(out["logits"], y, out["similarities"], layer.prototypes, layer.identity)["loss"]

    def _first_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        try:
            return self._loss(x, y)
        except Exception as exc:  # inductor missing a compiler or an op: eager is the same maths
            import warnings

            warnings.warn(f"torch.compile failed ({type(exc).__name__}); training eagerly", stacklevel=3)
            self._loss = self._eager_loss
            return self._loss(x, y)
        finally:
            self._checked = True

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self._loss(x, y) if self._checked else self._first_loss(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()


def _fold_pairs(module: nn.Module) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    convs = (nn.Conv1d, nn.Conv2d)
    bns = (nn.BatchNorm1d, nn.BatchNorm2d)
    children = dict(module.named_children())
    for name, child in children.items():
        if name.startswith("conv") and isinstance(child, convs):
            bn_name = "bn" + name.removeprefix("conv")
            if isinstance(children.get(bn_name), bns):
                setattr(module, name, fuse_conv_bn_eval(child, children[bn_name]))
                setattr(module, bn_name, nn.Identity())
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            if isinstance(module[i], convs) and isinstance(module[i + 1], bns):
                module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                module[i + 1] = nn.Identity()
    for child in module.children():
        _fold_pairs(child)


def inference_copy(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` for inference: every BatchNorm folded into the convolution
    before it (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and 2D branches in channels-last
    layout. Same outputs up to float rounding; the original is left untouched."""
    import copy

    fast = copy.deepcopy(net).eval()
    _fold_pairs(fast)
    for module in fast.modules():
        if isinstance(module, ProtoBranch):
            channels_last_branch(module)
    return fast
