"""Pooling benchmark cases: hotkernels vs F.max_pool2d / F.avg_pool2d on a ResNet-stem-sized input,
NCHW and channels_last."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import Case
from ..ops.pool import avg_pool2d, max_pool2d

Pool = Callable[[torch.Tensor], torch.Tensor]

# (name, torch's call, ours, output elements per input element)
POOLS: list[tuple[str, Pool, Pool, float]] = [
    ("max 3x3/s2/p1", lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: max_pool2d(x, 3, 2, 1), 0.25),
    ("avg 2x2", lambda x: F.avg_pool2d(x, 2), lambda x: avg_pool2d(x, 2), 0.25),
]


def _input(shape, dtype, device, channels_last: bool, requires_grad: bool = False) -> torch.Tensor:
    x = torch.randn(shape, dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


def _forward(shape, dtype, device, channels_last, theirs: Pool, ours: Pool):
    def setup():
        x = _input(shape, dtype, device, channels_last)
        return {"torch": lambda: theirs(x), "hotkernels": lambda: ours(x)}

    return setup


def _forward_backward(shape, dtype, device, channels_last, theirs: Pool, ours: Pool):
    def setup():
        x = _input(shape, dtype, device, channels_last, requires_grad=True)
        g = torch.randn_like(theirs(x.detach()))

        def step(fn: Pool):
            def run():
                x.grad = None
                fn(x).backward(g)
                return x.grad

            return run

        return {"torch": step(theirs), "hotkernels": step(ours)}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    shape = (4 if quick else 32, 64, 112, 112)
    dtype = torch.float32
    n = torch.Size(shape).numel()
    b = torch.empty((), dtype=dtype).element_size()
    out = []
    for channels_last in (False, True):
        fmt = "channels_last" if channels_last else "nchw"
        size = "x".join(map(str, shape))
        for name, theirs, ours, ratio in POOLS:
            m = int(n * ratio)
            # Memory floors: forward reads x, writes y; forward+backward (max) also writes int64
            # indices, then reads grad_output and indices and writes grad_input.
            out.append(Case("pool", f"{name} forward {fmt} {size}", device,
                            _forward(shape, dtype, device, channels_last, theirs, ours), bytes=(n + m) * b))
            if name.startswith("max"):
                out.append(Case("pool", f"{name} forward+backward {fmt} {size}", device,
                                _forward_backward(shape, dtype, device, channels_last, theirs, ours),
                                bytes=(n + m) * b + m * 8 + m * (b + 8) + n * b))
    return out
