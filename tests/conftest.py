"""Shared fixtures: the real data folder beside the checkout, small thread counts, seeds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDCL_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real scans/records in ``../shared/data``; skips cleanly when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it is not part of a fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test (the networks here are tiny; two threads only add overhead on the
    2-core test machine). A test that wants more sets them itself; torch is not imported for it."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_random_checkpoint(path: Path, arch: str) -> Path:
    """A medcl zones checkpoint of a tiny ``arch`` network with seeded random weights."""
    import torch

    from medcl.data.zones_labels import LABEL_MAP
    from medcl.nets.dualpath import build_zones_net

    torch.manual_seed(0)
    model = {"arch": arch, "filters": [4, 8, 8, 8]}
    net = build_zones_net(model)
    payload = {
        "family": "zones",
        "config": {"model": model},
        "label_map": LABEL_MAP,
        "state_dict": net.state_dict(),
        "versions": {},
        "extra": {},
    }
    torch.save({"medcl": payload}, path)
    return path


@pytest.fixture(scope="session")
def random_zones_checkpoint():
    """``random_zones_checkpoint(path, arch)`` writes a tiny random-weight zones checkpoint."""
    return write_random_checkpoint


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI (``MEDCL_REQUIRE_BROWSER=1``, set by ``make test`` when ``CI=true``) a missing
    Chromium stops the run up front instead of silently skipping the report browser tests."""
    from medcl.explain.browser import find_chromium

    if os.environ.get("MEDCL_REQUIRE_BROWSER") == "1" and find_chromium() is None:
        raise pytest.UsageError(
            "MEDCL_REQUIRE_BROWSER=1 but no Chromium was found (`make browser` installs Debian's chromium)"
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    """Say loudly, at the end of the run, when the browser tests did not run and why."""
    from medcl.explain.browser import find_chromium

    if find_chromium() is None:
        terminalreporter.write_line(
            "medcl: NOTE: headless Chromium is not installed, so the HTML report browser tests were SKIPPED "
            "(run `make browser`, or set MEDCL_CHROMIUM=/path/to/chromium)",
            yellow=True,
            bold=True,
        )
