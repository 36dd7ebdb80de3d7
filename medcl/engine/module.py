"""The LightningModule every family derives from; it writes the ``"medcl"`` checkpoint entry."""

from __future__ import annotations

from typing import Any

import lightning as L
from torch import nn

from medcl.engine.checkpoint import model_payload
from medcl.errors import MedclError


class MedclModule(L.LightningModule):
    """Base LightningModule of every family.

    Subclasses set ``family`` (class attribute), ``self.net`` (the plain ``nn.Module`` that is
    exported), ``self.medcl_config`` (resolved config as a JSON-able dict), ``self.label_map`` and,
    when needed, ``self.medcl_extra`` (tensors/lists/primitives only).
    """

    family: str = ""

    def __init__(
        self,
        net: nn.Module | None = None,
        config: dict[str, Any] | None = None,
        label_map: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        if net is not None:
            self.net = net
        self.medcl_config: dict[str, Any] = config or {}
        self.label_map: dict[str, int] | None = label_map
        self.medcl_extra: dict[str, Any] = {}

    def medcl_payload(self) -> dict[str, Any]:
        """This module's ``"medcl"`` checkpoint entry (:func:`medcl.engine.checkpoint.model_payload`)."""
        if not self.family:
            raise RuntimeError(f"{type(self).__name__} must set the class attribute 'family'")
        return model_payload(self.family, self.net, self.medcl_config, self.label_map, self.medcl_extra)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["medcl"] = self.medcl_payload()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        payload = checkpoint.get("medcl")
        if payload is not None and payload.get("family") != self.family:
            raise MedclError(f"checkpoint is of family '{payload.get('family')}', expected '{self.family}'")
        if payload is not None:
            self.medcl_extra = payload.get("extra", {}) or {}
