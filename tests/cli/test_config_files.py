"""Every YAML file under configs/ loads and validates against its pipeline's schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcl.cli.config import SCHEMAS, schema_for
from medcl.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FILES = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_family_ships_configs() -> None:
    for family in SCHEMAS:
        assert list((CONFIGS / family).glob("*.yaml")), f"configs/{family}/ has no YAML file"


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CONFIGS)) for p in FILES])
def test_config_file_validates(path: Path) -> None:
    cfg = load_config(schema_for(path.parent.name), path)
    assert cfg.train.max_epochs >= 1
