"""SepCLR loss under DDP (2 CPU ranks, gloo): gathered loss = single-process loss on the global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medcl.losses.sepclr import SepCLRLoss


def _batch():
    g = torch.Generator().manual_seed(0)
    c1, c2 = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)
    s1, s2 = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
    return c1, c2, s1, s2, torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        parts = [t[rank * 4 : (rank + 1) * 4].clone() for t in _batch()]
        inputs = [p.requires_grad_() for p in parts[:4]]
        loss = SepCLRLoss(beta_s=1.0, beta_reg=10.0, lam=10.0, gather=True)(*inputs, parts[4])
        loss.backward()
        queue.put((rank, loss.item(), [p.grad.tolist() for p in inputs]))  # by value, not shared memory
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gathered_loss_and_gradients_match_global_batch():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    full = [t.clone().requires_grad_() if t.is_floating_point() else t for t in _batch()]
    want = SepCLRLoss(beta_s=1.0, beta_reg=10.0, lam=10.0)(*full)
    want.backward()
    for rank, value, grads in results:
        assert value == pytest.approx(want.item(), rel=1e-12)
        for got, ref in zip(grads, full[:4]):
            # every rank holds the global loss and the gather's backward sums the ranks' gradients: each
            # rank's rows get world_size x the global gradient, which DDP's gradient averaging undoes
            torch.testing.assert_close(torch.tensor(got, dtype=torch.float64), 2 * ref.grad[rank * 4 : (rank + 1) * 4])
