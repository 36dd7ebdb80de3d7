"""ONNX export of medcl networks and their onnxruntime counterparts.

An ONNX export is a folder: ``model.onnx``, ``card.json`` (the model card of
:mod:`medcl.engine.weights` plus the graph's input/output names and ``onnx_sha256``, the digest of
``model.onnx`` checked on load) and family files written by the export pipeline. Export uses
``torch.onnx.export``: the TorchScript-based exporter by default (seconds, dynamic axes by name)
or the ``torch.export``-based one (``exporter="dynamo"``, needs ``onnxscript``). onnxruntime runs
the graph on CPU (or CUDA when its GPU build is installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medcl.errors import MedclError

ONNX_NAME = "model.onnx"
CARD_NAME = "card.json"
FORMAT = "medcl-onnx/1"
OPSET = 18


class ZonesPatchModel(nn.Module):
    """One patch ``(B, 1, X, Y, Z)`` in, ``(B, 6, X, Y, Z)`` out: 5 fused zone probabilities + uncertainty
    (``(B, 5, ...)`` without uncertainty, as the MONAI bundle's network)."""

    def __init__(self, net: nn.Module, uncertainty: bool = True) -> None:
        super().__init__()
        self.net, self.uncertainty = net, uncertainty

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        probs, uncertainty = self.net.zone_probabilities(image)
        if not self.uncertainty:
            return probs.float()
        return torch.cat([probs.float(), uncertainty.float()], dim=1)


class ECGOutputsModel(nn.Module):
    """``ecg`` ``(N, 12, samples)`` in; ``probabilities`` ``(N, L)`` of the model's head and the
    concatenated prototype ``similarities`` ``(N, P)`` (rhythm, morphology, global order) out."""

    def __init__(self, net: nn.Module, head: str) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward(self, ecg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from medcl.nets.protoecg import BRANCHES, head_probabilities

        out = self.net(ecg)
        sims = torch.cat([out[f"{b}.similarities"] for b in BRANCHES], dim=1)
        return head_probabilities(self.net, out, self.head, torch.float32), sims


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    out_dir: str | os.PathLike,
    input_name: str,
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    card: dict[str, Any],
    exporter: str = "legacy",
) -> Path:
    """Export ``model`` (in eval mode, on CPU) to ``out_dir/model.onnx`` and write ``card.json``.

    Args:
        model: module taking one tensor.
        example: an example input (its dynamic axes must not be size 1).
        input_name, output_names: graph names.
        dynamic_axes: ``{name: {axis: label}}`` for the input and outputs.
        card: model card; ``format``, the names and ``onnx_sha256`` are added.
        exporter: ``"legacy"`` (TorchScript-based) or ``"dynamo"`` (``torch.export``-based).
    """
    from medcl.utils import atomic_write_path, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    with atomic_write_path(out / ONNX_NAME) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
        if exporter == "legacy":
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=[input_name],
                              output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=OPSET)
        elif exporter == "dynamo":
            _export_dynamo(model, example, tmp, input_name, output_names, dynamic_axes)
        else:
            raise MedclError(f"exporter: {exporter!r} is not one of ['legacy', 'dynamo']")
    full = {**card, "format": FORMAT, "input": input_name, "outputs": list(output_names),
            "exporter": exporter, "opset": OPSET, "onnx_sha256": file_sha256(out / ONNX_NAME)}
    write_json(out / CARD_NAME, full)
    return out / ONNX_NAME


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, input_name: str,
                   output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    from torch.export import Dim

    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise MedclError("exporter: 'dynamo' needs onnxscript (pip install 'medcl[export]')") from None
    shapes = {axis: Dim.AUTO for axis in dynamic_axes.get(input_name, {})}
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=[input_name],
                                    output_names=list(output_names), dynamic_shapes=(shapes,), opset_version=OPSET,
                                    verbose=False)
    except Exception as exc:  # noqa: BLE001 - e.g. ProtoECGNet: FX code generation fails on the branch "global"
        cause = exc.__cause__ or exc
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:160]
        raise MedclError(f"exporter: torch.export-based ONNX export failed ({reason}); use --exporter legacy") from None
    program.save(str(path))


def read_onnx_card(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(folder, card)`` of an ONNX export given its folder or its ``model.onnx``."""
    folder = Path(path)
    folder = folder.parent if folder.suffix == ".onnx" else folder
    card_path = folder / CARD_NAME
    if not (folder / ONNX_NAME).is_file() or not card_path.is_file():
        raise MedclError(f"{path}: not a medcl ONNX export (needs {ONNX_NAME} and {CARD_NAME})")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise MedclError(f"{card_path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise MedclError(f"{card_path}: not a medcl ONNX model card")
    return folder, card


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def onnx_providers(device: str = "auto", available: Sequence[str] | None = None) -> list[str | tuple[str, dict]]:
    """onnxruntime execution providers for ``--device`` (``available``: onnxruntime's, by default
    ``onnxruntime.get_available_providers()``).

    ``"cpu"``: the CPU provider only. ``"cuda"``/``"cuda:N"``: CUDA on GPU ``N`` (0 by default), the
    CPU for the operators CUDA lacks. ``"auto"``: CUDA on this process's GPU (``LOCAL_RANK``) when
    onnxruntime has it, else the CPU.

    Raises:
        MedclError: not a device name, a device onnxruntime cannot run on, or CUDA asked for
            where onnxruntime has no CUDA provider.
    """
    from medcl.engine.device import local_rank, parse_device

    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    has_cuda = CUDA_PROVIDER in available
    if device == "auto":
        return [(CUDA_PROVIDER, {"device_id": local_rank()}), CPU_PROVIDER] if has_cuda else [CPU_PROVIDER]
    where = parse_device(device)
    if where.type == "cpu":
        return [CPU_PROVIDER]
    if where.type != "cuda":
        raise MedclError(f"--device {device}: onnxruntime runs on cpu or cuda only")
    if not has_cuda:
        raise MedclError(f"--device {device}: onnxruntime has no CUDA provider on this machine "
                         "(needs a GPU and the onnxruntime-gpu package)")
    return [(CUDA_PROVIDER, {"device_id": where.index or 0}), CPU_PROVIDER]


class OnnxModel:
    """An onnxruntime session over a medcl ONNX export, checked for family and integrity.

    ``device`` picks the execution providers (:func:`onnx_providers`).

    Raises:
        MedclError: missing files, another family, a ``model.onnx`` that does not match its
            recorded SHA-256, onnxruntime not installed, or a ``device`` it cannot run on.
    """

    def __init__(self, path: str | os.PathLike, family: str, threads: int | None = None,
                 device: str = "auto") -> None:
        self.folder, self.card = read_onnx_card(path)
        model = self.folder / ONNX_NAME
        if self.card.get("family") != family:
            raise MedclError(f"{model}: ONNX model is of family '{self.card.get('family')}', expected '{family}'")
        if file_sha256(model) != self.card.get("onnx_sha256"):
            raise MedclError(f"{model}: does not match its recorded SHA-256 (file edited or damaged)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise MedclError("engine: onnxruntime is not installed (pip install 'medcl[export]')") from None
        providers = onnx_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - invalid graph
            raise MedclError(f"{model}: onnxruntime cannot load it ({' '.join(str(exc).split())[:160]})") from None
        if device != "auto" and providers[0] != CPU_PROVIDER and CUDA_PROVIDER not in self.session.get_providers():
            raise MedclError(f"--device {device}: onnxruntime could not start its CUDA provider (no usable GPU?)")
        self.input = self.card["input"]

    def __call__(self, x: np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Run the graph on one float32 batch; returns the outputs in card order."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})


class OnnxZonesNet(nn.Module):
    """A zones network backed by onnxruntime: ``zone_probabilities(x)`` like the PyTorch nets.

    Used by :class:`medcl.inferers.zones_segmenter.ZonesSegmenter` for ``--engine onnxruntime``.
    """

    def __init__(self, model: OnnxModel) -> None:
        super().__init__()
        self.model = model
        divisor = model.card.get("divisor") or [16, 16, 16]
        self.spec = type("OnnxSpec", (), {"divisor": list(divisor)})()

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused probabilities ``(B, 5, ...)`` and uncertainty ``(B, 1, ...)`` on ``x``'s device."""
        out = torch.from_numpy(self.model(x.float())[0]).to(x.device)
        return out[:, :5], out[:, 5:]
