"""Pooling benchmark cases: hotkernels vs F.max_pool2d / F.avg_pool2d (the baselines) on a
ResNet-stem-sized input, NCHW and channels_last."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import Case, Target, Traffic, input_grad
from ..ops.pool import avg_pool2d, max_pool2d

Pool = Callable[[torch.Tensor], torch.Tensor]

# (name, torch's call and its name, ours, output elements per input element)
POOLS: list[tuple[str, str, Pool, Pool, float]] = [
    ("max 3x3/s2/p1", "torch F.max_pool2d", lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: max_pool2d(x, 3, 2, 1),
     0.25),
    ("avg 2x2", "torch F.avg_pool2d", lambda x: F.avg_pool2d(x, 2), lambda x: avg_pool2d(x, 2), 0.25),
]

# Against torch: the CPU on float32 (32, 64, 112, 112); the GPU at >= 80% of the measured copy bandwidth.
TARGETS = [
    Target(4, "cpu", "max 3x3/s2/p1 forward nchw 32x64x112x112", speedup=8.0),
    Target(4, "cpu", "max 3x3/s2/p1 forward+backward nchw 32x64x112x112", speedup=5.0),
    Target(4, "cpu", "avg 2x2 forward nchw 32x64x112x112", speedup=3.0),
    Target(4, "cpu", "* channels_last 32x64x112x112", speedup=1.0),
    Target(4, "cuda", "*", speedup=1.0, floor_share=0.8),
    # The CPU on each instruction set: max pooling at its memory floor (forward+backward counts a
    # one-byte argmax per output, what autograd saves), and channels_last forward+backward ahead of torch.
    Target(16, "cpu", "max 3x3/s2/p1 forward nchw 32x64x112x112", floor_share=0.8),
    Target(16, "cpu", "max 3x3/s2/p1 forward+backward nchw 32x64x112x112", floor_share=0.8),
    Target(16, "cpu", "max 3x3/s2/p1 forward+backward channels_last 32x64x112x112", speedup=1.2),
]


def _input(shape, dtype, device, channels_last: bool, requires_grad: bool = False) -> torch.Tensor:
    x = torch.randn(shape, dtype=dtype, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


def _forward(shape, dtype, device, channels_last, torch_name: str, theirs: Pool, ours: Pool):
    def setup():
        x = _input(shape, dtype, device, channels_last)
        return {torch_name: lambda: theirs(x), "hotkernels": lambda: ours(x)}

    return setup


def _forward_backward(shape, dtype, device, channels_last, torch_name: str, theirs: Pool, ours: Pool):
    def setup():
        x = _input(shape, dtype, device, channels_last, requires_grad=True)
        g = torch.randn_like(theirs(x.detach()))
        return {torch_name: input_grad(theirs, x, g), "hotkernels": input_grad(ours, x, g)}

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
        for name, torch_name, theirs, ours, ratio in POOLS:
            m = int(n * ratio)
            impls = (torch_name, theirs, ours)
            # Least traffic: forward reads x and writes y; forward+backward (max) also writes the
            # argmax autograd saves (a byte per output: the window offset), then, a second pass (the
            # backward op), reads grad_output and the argmax and writes grad_input (each element
            # once). Every output is fresh.
            out.append(Case("pool", f"{name} forward {fmt} {size}", device,
                            _forward(shape, dtype, device, channels_last, *impls), baselines=(torch_name,),
                            traffic=Traffic(read=n * b, write=(m * b,))))
            if name.startswith("max"):
                forward, backward = Traffic(read=n * b, write=(m * b, m)), Traffic(read=m * (b + 1), write=(n * b,))
                out.append(Case("pool", f"{name} forward+backward {fmt} {size}", device,
                                _forward_backward(shape, dtype, device, channels_last, *impls),
                                baselines=(torch_name,), traffic=forward + backward, passes=(forward, backward)))
    return out
