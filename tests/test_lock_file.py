"""The lock file pins every dependency that `make test` installs, within pyproject's ranges."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"


def _lock_tool():
    spec = importlib.util.spec_from_file_location("medcl_lock_tool", REPO / "tools" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_extras() -> list[str]:
    text = (REPO / "Makefile").read_text()
    return re.search(r"^EXTRAS \?= (.+)$", text, re.M).group(1).strip().split(",")


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in _make_extras():
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_lock_pins_every_requirement_within_its_range():
    tool = _lock_tool()
    pins = tool.read_lock(LOCK)
    for req in _requirements():
        name = tool.canonical(req.name)
        if name == "torch":
            assert name not in pins, "torch is installed by the Makefile (TORCH_SPEC), not pinned"
            continue
        assert name in pins, f"{req.name} is a dependency but not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
        )


def test_lock_tool_reads_and_compares(tmp_path, monkeypatch):
    tool = _lock_tool()
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\nPyYAML==6.0.2  # trailing\nnumpy==1.0.0\nonly_in_lock==2.0\n")
    assert tool.read_lock(lock) == {"pyyaml": "6.0.2", "numpy": "1.0.0", "only-in-lock": "2.0"}
    monkeypatch.setattr(tool, "installed", lambda: {"pyyaml": "6.0.2", "numpy": "2.4.0", "torch": "2.13.0", "extra-pkg": "1"})
    rows = tool.differences(lock)
    assert rows == [("extra-pkg", None, "1"), ("numpy", "1.0.0", "2.4.0"), ("only-in-lock", "2.0", None)]
    assert tool.check(lock) == 1  # numpy differs; absent and extra packages alone would not fail
    lock.write_text("pyyaml==6.0.2\nnumpy==2.4.0\n")
    assert tool.check(lock) == 0
