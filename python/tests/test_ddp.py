"""DistributedDataParallel on gloo, two processes on loopback: the gradients of an RA model
equal those of one process on the whole batch."""

import os
import socket
import types

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from ra_torch import CausalSelfAttention

WORLD = 2


def make_model(seed):
    torch.manual_seed(seed)
    config = types.SimpleNamespace(n_embd=64, n_head=2, bias=True, dropout=0.0, attention="ra",
                                   ra_rank=4, ra_gates="per_head", ra_restart=True)
    return CausalSelfAttention(config).double()


def make_batch(seed):
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(4, 6, 64, dtype=torch.float64, generator=g)


def loss_of(model, x):
    return model(x).square().mean()


def worker(rank, port, seed, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = DistributedDataParallel(make_model(seed))
        x = make_batch(seed).chunk(WORLD)[rank]
        loss_of(model, x).backward()  # each rank: mean over its half; DDP averages the halves
        grads = {n: p.grad for n, p in model.module.named_parameters()}
        torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes_match_one(seed, tmp_path):
    mp.spawn(worker, args=(free_port(), seed, str(tmp_path)), nprocs=WORLD, join=True)
    model = make_model(seed)
    loss_of(model, make_batch(seed)).backward()
    expected = dict(model.named_parameters())
    assert set(expected) >= {"w_std", "w_rec", "restart", "c_attn.weight"}
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert set(got) == set(expected)
        for name, grad in got.items():
            # ra reads gates and restart as float32 and returns their gradients in float32.
            tol = dict(rtol=1e-6, atol=1e-9) if name in ("w_std", "w_rec", "restart") else \
                dict(rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(grad, expected[name].grad, **tol,
                                       msg=lambda m: f"rank {rank}, {name}: {m}")
