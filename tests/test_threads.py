"""Ops called from several Python threads at once give the same results as serially (the kernels
keep no shared mutable state; at::parallel_for nests inside each caller's thread). Optimizers are
per-object state and are not shared across threads."""

from concurrent.futures import ThreadPoolExecutor

import torch

import hotkernels.functional as HF

_W = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(99))
_CELL = [torch.randn(4 * 16, n, generator=torch.Generator().manual_seed(n)) for n in (70, 16)]
_LINEAR = [torch.randn(*shape, generator=torch.Generator().manual_seed(7)) for shape in ((40, 1000), (40,))]


def _lstm(x: torch.Tensor) -> torch.Tensor:
    inp = x.reshape(-1, 70)[:, :70]
    h = torch.zeros(inp.shape[0], 16)
    return torch.cat(HF.lstm_cell(inp, (h, h), *_CELL), -1)


WORK = {
    "mish": lambda x: HF.mish(x),
    "mish backward": lambda x: torch.ops.hotkernels.mish_backward(x.cos(), x),
    "max_pool2d": lambda x: HF.max_pool2d(x.reshape(3, 1, 7, 10_000)[..., :9_999], 3, 2, 1, return_indices=True)[0],
    "avg_pool2d": lambda x: HF.avg_pool2d(x.reshape(3, 1, 7, 10_000)[..., :9_999], 2),
    "conv2d": lambda x: HF.conv2d(x.reshape(1, 3, 7, 10_000)[..., :300], _W, padding=1),
    "lstm_cell": _lstm,
    "linear": lambda x: HF.linear(x.reshape(210, 1000), *_LINEAR),  # packed tiles
    "linear few rows": lambda x: HF.linear(x[:, :1000], *_LINEAR),  # the unpacked product of 3 rows
}


def test_concurrent_calls_match_serial():
    inputs = [torch.randn(3, 70_000, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    jobs = [(name, x) for name in WORK for x in inputs]
    serial = [WORK[name](x) for name, x in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=4) as pool:
            concurrent = list(pool.map(lambda job: WORK[job[0]](job[1]), jobs))
        for a, b in zip(concurrent, serial):
            assert torch.equal(a, b)
