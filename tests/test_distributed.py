"""hotkernels optimizers under DistributedDataParallel (CPU, gloo, two processes on localhost) end
with the same parameters as one process on the full batch."""

import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hotkernels

STEPS = 5
pytestmark = pytest.mark.skipif(not dist.is_available() or sys.platform != "linux", reason="needs torch.distributed on Linux")


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), hotkernels.nn.Mish(), nn.Linear(16, 3)).double()


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 12, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64))
            for _ in range(STEPS)]


def make_optimizer(params, name: str):
    if name == "Ranger":
        return hotkernels.optim.Ranger(params, lr=1e-2)
    return getattr(hotkernels.optim, name)(params, lr=1e-2)


def train(model: nn.Module, opt, data) -> None:
    for x, y in data:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def worker(rank: int, world: int, port: int, name: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = nn.parallel.DistributedDataParallel(make_model())
    opt = make_optimizer(model.parameters(), name)
    shard = [(x[rank::world], y[rank::world]) for x, y in batches()]  # mse's mean: DDP averages the halves
    train(model, opt, shard)
    if rank == 0:
        torch.save([p.detach() for p in model.module.parameters()], out)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["Adam", "LAMB", "Ranger"])
def test_ddp_matches_single_process(tmp_path, name):
    out = str(tmp_path / "params.pt")
    ctx = mp.spawn(worker, args=(2, free_port(), name, out), nprocs=2, join=False)
    for p in ctx.processes:
        p.join(timeout=240)
    hung = [p for p in ctx.processes if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a DDP worker hung"
    assert all(p.exitcode == 0 for p in ctx.processes), [p.exitcode for p in ctx.processes]
    model = make_model()
    train(model, make_optimizer(model.parameters(), name), batches())
    for ours, ref in zip(torch.load(out), model.parameters()):
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-12)
