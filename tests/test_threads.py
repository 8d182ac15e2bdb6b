"""Ops called from several Python threads at once give the same results as serially (the kernels
keep no shared mutable state; at::parallel_for nests inside each caller's thread)."""

from concurrent.futures import ThreadPoolExecutor

import torch

import hotkernels.functional as HF

WORK = {
    "mish": lambda x: HF.mish(x),
    "mish backward": lambda x: torch.ops.hotkernels.mish_backward(x.cos(), x),
}


def test_concurrent_calls_match_serial():
    inputs = [torch.randn(3, 70_001, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    jobs = [(name, x) for name in WORK for x in inputs]
    serial = [WORK[name](x) for name, x in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(lambda job: WORK[job[0]](job[1]), jobs))
        for a, b in zip(concurrent, serial):
            assert torch.equal(a, b)
