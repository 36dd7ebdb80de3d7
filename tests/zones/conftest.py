"""Shared helpers of the zones tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: the zones networks here are tiny, and two threads only add overhead."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_random_checkpoint(path: Path, arch: str) -> Path:
    """A medcl zones checkpoint of a tiny ``arch`` network with seeded random weights."""
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
