"""Typed configs: unknown keys, wrong types, overrides and YAML errors name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcl.config import MedclModel, TrainConfig, load_config, parse_overrides
from medcl.errors import MedclError


class Model(MedclModel):
    width: int = 8
    name: str = "x"


class Pipeline(MedclModel):
    model: Model = Model()
    train: TrainConfig = TrainConfig()


def test_overrides_nest_and_parse_yaml_scalars() -> None:
    assert parse_overrides(["a.b=3", "a.c=true", "d=[1, 2]", "e=x"]) == {
        "a": {"b": 3, "c": True},
        "d": [1, 2],
        "e": "x",
    }


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(MedclError, match="override|empty key"):
        parse_overrides([bad])


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  width: 16\ntrain:\n  max_epochs: 2\n")
    cfg = load_config(Pipeline, path, ["train.max_epochs=5"])
    assert cfg.model.width == 16 and cfg.train.max_epochs == 5 and cfg.model.name == "x"


def test_unknown_key_names_file_and_dotted_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  widht: 16\n")
    with pytest.raises(MedclError) as exc:
        load_config(Pipeline, path)
    assert str(exc.value) == f"{path}: model.widht: unknown key"


def test_wrong_type_names_key(tmp_path: Path) -> None:
    with pytest.raises(MedclError, match=r"<overrides>: train\.max_epochs: "):
        load_config(Pipeline, None, ["train.max_epochs=many"])
    with pytest.raises(MedclError, match=r"train\.max_time: .*DD:HH:MM:SS"):
        load_config(Pipeline, None, ["train.max_time=5min"])


def test_invalid_yaml_and_non_mapping(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [1, 2\n")
    with pytest.raises(MedclError, match=r"broken.yaml: invalid YAML \(line"):
        load_config(Pipeline, broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(MedclError, match="top level must be a mapping"):
        load_config(Pipeline, listing)
