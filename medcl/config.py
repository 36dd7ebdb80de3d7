"""Typed, validated configuration: YAML files plus dotted command-line overrides.

Every pipeline schema derives from :class:`MedclModel` (unknown keys are rejected) and holds a
:class:`TrainConfig` section for the shared engine. :func:`load_config` turns a YAML file and
``key.sub=value`` overrides into a validated instance, and reports any problem as one
:class:`~medcl.errors.MedclError` line naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import os
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from medcl.errors import MedclError

__all__ = ["SEPCLR_PRESETS", "MedclModel", "NonNegativeInt", "PositiveFloat", "PositiveInt", "TrainConfig", "load_config",
           "parse_overrides", "dump_config"]

T = TypeVar("T", bound="MedclModel")

#: SepCLR ``(beta_s, beta_reg, lam)`` loss-weight presets of the paper (natural vs medical images; Louiset et al.,
#: ICLR 2024). Plain data kept here, not in :mod:`medcl.losses.sepclr` (which re-exports it as ``PRESETS``), so
#: the config schema and the inference commands read it without loading the losses.
SEPCLR_PRESETS: dict[str, tuple[float, float, float]] = {
    "natural": (1000.0, 1000.0, 10.0),
    "medical": (1.0, 10.0, 10.0),
}


NonNegativeInt = Annotated[int, Field(ge=0)]
"""An index (a channel): a whole number from 0."""
PositiveInt = Annotated[int, Field(gt=0)]
"""An element of a size list (voxels, layers): a whole number above 0."""
PositiveFloat = Annotated[float, Field(gt=0)]
"""An element of a spacing list (mm): a finite number above 0."""


def _bool_misplaced(tp: Any, value: Any) -> bool:
    """``value`` is (or holds) a YAML ``true``/``false`` where the annotation ``tp`` admits no bool.

    Pydantic's lax mode reads ``true`` as the integer 1 and ``false`` as 0, so ``train.max_epochs=true``
    would train for one epoch without a word; a boolean is only valid where the schema says bool.
    """
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _bool_misplaced(args[0], value)
    if isinstance(value, bool):
        if tp is Any or tp is bool:
            return False
        if origin in (Union, types.UnionType):
            return all(_bool_misplaced(a, value) for a in args)
        return not (origin is Literal and any(isinstance(a, bool) for a in args))
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        return any(_bool_misplaced(args[0], v) for v in value if isinstance(v, bool))
    if origin in (Union, types.UnionType) and isinstance(value, (list, tuple)):
        return all(_bool_misplaced(a, value) for a in args if get_origin(a) in (list, tuple))
    return False


class MedclModel(BaseModel):
    """Base of every medcl config section: unknown keys are errors, assignment is validated, numbers
    are finite (no NaN/inf) and a boolean is never read as a number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: Any) -> Any:
        field = cls.model_fields.get(info.field_name)
        if field is not None and _bool_misplaced(field.annotation, value):
            raise ValueError("a boolean (true/false) is not valid here; expected a number")
        return value


def section_from_dataclass(spec: type, name: str, doc: str, module: str) -> type[MedclModel]:
    """A config section with the fields, types and defaults of the dataclass ``spec``.

    Validating the section builds a ``spec`` (its ``__post_init__`` holds the checks), so a component's
    settings are defined once, on the component, e.g. ``ZonesModelConfig`` from
    :class:`medcl.nets.dualpath.ZonesNetSpec`.
    """
    hints = get_type_hints(spec)

    def default(f: dataclasses.Field) -> Any:
        if f.default is dataclasses.MISSING:
            return Field(default_factory=f.default_factory)
        return Field(f.default)

    def check_spec(self: MedclModel) -> MedclModel:
        spec(**self.model_dump())
        return self

    return create_model(
        name, __base__=MedclModel, __doc__=doc, __module__=module,
        __validators__={"_check_spec": model_validator(mode="after")(check_spec)},
        **{f.name: (hints[f.name], default(f)) for f in dataclasses.fields(spec)},
    )


class TrainConfig(MedclModel):
    """Settings of the shared Lightning engine (:func:`medcl.engine.build_trainer`)."""

    max_epochs: int = Field(10, ge=1, description="Training epochs.")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimiser steps (-1: no limit).")
    max_time: str | None = Field(None, description="Wall-clock limit, 'DD:HH:MM:SS' (None: no limit).")
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | str = Field("auto", description="Device count, list string '0,1' or 'auto'.")
    num_nodes: int = Field(1, ge=1, description="Nodes for multi-node DDP (torchrun --nnodes / SLURM).")
    strategy: str = Field("auto", description="Lightning strategy; 'auto' picks DDP for several devices.")
    precision: str | None = Field(
        None, description="Lightning precision; None: bf16-mixed on GPUs that support it, fp32 otherwise."
    )
    seed: int = 0
    deterministic: bool = Field(False, description="Deterministic algorithms (slower; exact resumes).")
    gradient_clip_val: float | None = Field(None, ge=0)
    accumulate_grad_batches: int = Field(1, ge=1)
    check_val_every_n_epoch: int = Field(1, ge=1)
    log_every_n_steps: int = Field(10, ge=1)
    checkpoint_every_n_steps: int | None = Field(
        None, ge=1, description="Also save last.ckpt every N steps (None: at each epoch end)."
    )
    early_stopping_patience: int | None = Field(None, ge=1, description="Epochs without improvement.")
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(default_factory=lambda: ["csv"])
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    progress_bar: bool | None = Field(None, description="None: a bar on terminals, log lines otherwise.")

    @field_validator("max_time")
    @classmethod
    def _check_max_time(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError("expected 'DD:HH:MM:SS'")
        return value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``["train.max_epochs=3", "model.width=16"]`` into a nested dict (values read as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise MedclError(f"{item}: override must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise MedclError(f"{item}: empty key in override")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise MedclError(f"{key}: cannot parse value {raw!r}: {exc.__class__.__name__}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MedclError(f"{key}: conflicts with an earlier override of {part}")
            node = child
        node[parts[-1]] = value
    return nested


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MedclError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise MedclError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedclError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _format_validation_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(p for p in loc if p != "[key]") or "<root>"
        if err["type"] == "extra_forbidden" or loc[-1:] == ["[key]"]:  # a mapping's key that is not allowed
            allowed = f" ({err['msg'][0].lower()}{err['msg'][1:]})" if loc[-1:] == ["[key]"] else ""
            problems.append(f"{key}: unknown key{allowed}")
        else:
            problems.append(f"{key}: {err['msg']}")
    return f"{source}: " + "; ".join(problems)


def load_config(
    schema: type[T],
    path: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> T:
    """Load ``schema`` from an optional YAML file plus dotted overrides, validating everything.

    Args:
        schema: the pipeline's config class (a :class:`MedclModel` subclass).
        path: YAML file; ``None`` starts from the schema's defaults.
        overrides: ``key.sub=value`` strings applied after the file.

    Raises:
        MedclError: naming the file (or ``<overrides>``) and the dotted key at fault.
    """
    source = str(path) if path is not None else "<defaults>"
    data = _read_yaml(Path(path)) if path is not None else {}
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
        source = f"{source} + overrides" if path is not None else "<overrides>"
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise MedclError(_format_validation_error(source, exc)) from None


def dump_config(cfg: MedclModel) -> str:
    """The fully resolved config as YAML (what ``medcl config show`` prints)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
