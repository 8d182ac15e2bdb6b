"""Mish benchmark cases: hotkernels vs F.mish vs the composed x·tanh(softplus(x))."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case
from ..ops.mish import mish


def _composed(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


def _forward(n: int, dtype: torch.dtype, device: str):
    def setup():
        x = torch.randn(n, dtype=dtype, device=device)
        return {"torch": lambda: F.mish(x), "hotkernels": lambda: mish(x), "composed": lambda: _composed(x)}

    return setup


def _forward_inplace(n: int, dtype: torch.dtype, device: str):
    """In place on both sides: the kernels without the output's allocation and first touch."""

    def setup():
        x = torch.randn(n, dtype=dtype, device=device).clamp_(-5, 5)
        a, b = x.clone(), x.clone()

        def run(fn, y):
            def go():
                y.copy_(x)  # mish of mish of ... would drift into subnormals
                return fn(y, inplace=True)

            return go

        return {"torch": run(F.mish, a), "hotkernels": run(mish, b)}

    return setup


def _forward_backward(n: int, dtype: torch.dtype, device: str):
    def setup():
        x = torch.randn(n, dtype=dtype, device=device, requires_grad=True)
        g = torch.randn(n, dtype=dtype, device=device)

        def step(fn):
            def run():
                x.grad = None
                fn(x).backward(g)
                return x.grad

            return run

        return {"torch": step(F.mish), "hotkernels": step(mish), "composed": step(_composed)}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    n = 1 << 20 if quick else 1 << 24
    size = f"{n >> 20}M"
    out = []
    dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
    for dtype in dtypes:
        b = torch.empty((), dtype=dtype).element_size()
        name = str(dtype).removeprefix("torch.")
        # Memory floors: forward reads x and writes y; forward+backward also reads x and g and writes dx.
        out.append(Case("mish", f"forward {name} {size}", device, _forward(n, dtype, device), bytes=2 * n * b))
        # (+ the copy that restores the input each round: 2 more passes, the same on both sides)
        out.append(Case("mish", f"forward in place {name} {size}", device, _forward_inplace(n, dtype, device),
                        bytes=4 * n * b))
        out.append(Case("mish", f"forward+backward {name} {size}", device, _forward_backward(n, dtype, device), bytes=5 * n * b))
    return out
