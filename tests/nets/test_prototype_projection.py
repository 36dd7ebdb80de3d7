"""Prototype projection: the streamed, vectorised search equals a brute-force search."""

from __future__ import annotations

import pytest
import torch

from medcl.nets.prototype import GlobalPrototypes1D, TemporalPrototypes2D
from medcl.nets.prototype_projection import Projector, assign_unique, sample_window

torch.set_num_threads(2)


def brute_force(layer, feats, labels):
    """Reference push: loop over prototypes and samples, max over windows, strict '>' (first wins)."""
    ident = layer.identity
    best = []
    for j in range(layer.num_prototypes):
        classes = ident[j].nonzero().flatten().tolist()
        top, who, win = float("-inf"), -1, -1
        for i in range(feats.shape[0]):
            if not any(labels[i, c] == 1 for c in classes):
                continue
            sims = layer.window_similarities(feats[i : i + 1])[0, j].detach()
            score = float(sims.max())
            if score > top:
                top, who, win = score, i, int(torch.argmax(sims))
        best.append((top, who, win))
    return best


def stream(layer, feats, labels, batch=5, candidates=1):
    proj = Projector(layer, candidates)
    for s in range(0, feats.shape[0], batch):
        proj.update(feats[s : s + batch], labels[s : s + batch], torch.arange(s, min(s + batch, feats.shape[0])))
    return proj


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_projection_equals_brute_force(kind):
    torch.manual_seed(0)
    if kind == "2d":
        layer = TemporalPrototypes2D(3, 2, 8, 3).double()
        feats = torch.rand(23, 8, 1, 10, dtype=torch.float64)
    else:
        layer = GlobalPrototypes1D(3, 2, 8).double()
        feats = torch.randn(23, 8, dtype=torch.float64)
    labels = (torch.rand(23, 3) < 0.3).long()
    labels[:, 2] = 0
    labels[4, 2] = 1  # class 2 occurs in one sample only
    feats[7] = feats[3]  # an exact duplicate: the first one (3) must win a tie
    res = stream(layer, feats, labels).result()
    for j, (score, who, win) in enumerate(brute_force(layer, feats, labels)):
        assert int(res.sample[j]) == who
        assert float(res.score[j]) == pytest.approx(score, abs=1e-12)
        if kind == "2d":
            assert int(res.window[j]) == win
            torch.testing.assert_close(res.segment[j], feats[who, :, :, win : win + 3])
        else:
            torch.testing.assert_close(res.segment[j], feats[who])
        assert labels[who][layer.identity[j].bool()].any()  # its own class
    assert set(res.sample[4:6].tolist()) == {4}


def test_prototype_without_eligible_sample_is_reported():
    layer = GlobalPrototypes1D(2, 1, 4).double()
    feats = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([[1, 0]] * 6)
    res = stream(layer, feats, labels).result()
    assert res.sample.tolist()[1] == -1 and res.score[1] == float("-inf")
    torch.testing.assert_close(res.segment[1], layer.prototypes[1].detach())  # left unchanged


def test_topk_candidates_and_unique_assignment():
    torch.manual_seed(1)
    layer = TemporalPrototypes2D(1, 3, 4, 2).double()
    feats = torch.rand(12, 4, 1, 6, dtype=torch.float64)
    labels = torch.ones(12, 1, dtype=torch.long)
    proj = stream(layer, feats, labels, batch=4, candidates=5)
    scores, samples, windows = proj.candidate_lists()
    full = layer.window_similarities(feats).detach().amax(-1)  # (N, P)
    for j in range(3):
        expected = torch.sort(full[:, j], descending=True, stable=True)
        torch.testing.assert_close(scores[j], expected.values[:5])
        assert samples[j].tolist() == expected.indices[:5].tolist()
    col = assign_unique(scores, samples)
    chosen = samples[torch.arange(3), col]
    assert len(set(chosen.tolist())) == 3 and (col >= 0).all()


def test_assign_unique_hand_case():
    # prototypes 0 and 1 both want sample 7; 1 has the higher score and keeps it; 0 takes its second.
    score = torch.tensor([[0.9, 0.5], [0.95, 0.1], [0.3, 0.2]])
    sample = torch.tensor([[7, 2], [7, 3], [2, 5]])
    col = assign_unique(score, sample)
    assert col.tolist() == [1, 0, 1]  # 0 -> sample 2 (first claimed), 2 -> sample 5


def test_sample_window_reference_mapping():
    start, end = sample_window(torch.tensor([0, 10, 31]), 3, 32, 1000)
    assert start.tolist() == [0, 312, 907] and (end - start).tolist() == [93, 93, 93]
    start, end = sample_window(torch.tensor([0]), 32, 32, 1000)
    assert (start.item(), end.item()) == (0, 1000)


def greedy_reference(score, sample):
    """Plain greedy: visit candidates by decreasing score (ties: lower prototype, earlier column)."""
    p, k = score.shape
    order = sorted((-float(score[i, c]), i, c) for i in range(p) for c in range(k))
    choice, used = [-1] * p, set()
    for neg, i, c in order:
        s = int(sample[i, c])
        if choice[i] < 0 and s not in used and neg != float("inf"):
            choice[i], _ = c, used.add(s)
    return choice


@pytest.mark.parametrize("seed", range(5))
def test_assign_unique_equals_plain_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    score = torch.rand(9, 4, generator=g, dtype=torch.float64)
    sample = torch.randint(0, 8, (9, 4), generator=g)
    assert assign_unique(score, sample).tolist() == greedy_reference(score, sample)


def _ddp_worker(rank: int, world: int, port: int, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # forked child: keep clear of the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    layer = TemporalPrototypes2D(3, 2, 8, 3).double()
    feats = torch.rand(20, 8, 1, 10, dtype=torch.float64)
    labels = (torch.rand(20, 3) < 0.5).long()
    shard = torch.arange(rank, 20, world)  # DistributedSampler-like interleaved shard
    proj = Projector(layer)
    proj.update(feats[shard], labels[shard], shard)
    res = proj.result()
    if rank == 0:
        torch.save({"sample": res.sample, "score": res.score, "segment": res.segment}, out_file)
    dist.destroy_process_group()


@pytest.mark.slow
def test_projection_takes_best_across_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.start_processes(_ddp_worker, args=(2, port, str(out)), nprocs=2, join=True, start_method="fork")
    torch.manual_seed(0)
    layer = TemporalPrototypes2D(3, 2, 8, 3).double()
    feats = torch.rand(20, 8, 1, 10, dtype=torch.float64)
    labels = (torch.rand(20, 3) < 0.5).long()
    single = stream(layer, feats, labels, batch=20).result()
    got = torch.load(out)
    torch.testing.assert_close(got["score"], single.score)
    torch.testing.assert_close(got["segment"], single.segment)
    assert got["sample"].tolist() == single.sample.tolist()
