"""Shared fixtures: the real data folder beside the checkout, small thread counts, seeds."""

from __future__ import annotations

import os
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
