"""Mish benchmark cases: hotkernels vs F.mish (the baseline) vs the composed x·tanh(softplus(x))."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import Case, Target, Traffic, input_grad
from ..ops.mish import mish

# Against torch: the CPU on float32 16M on 2 threads; the GPU at >= 85% of the measured copy bandwidth.
# Then the CPU against the memory floor measured in the same run (forward+backward's floor: a clone
# plus one binary elementwise op, as its bytes below count).
TARGETS = [
    Target(2, "cpu", "forward float32 16M", speedup=5.0),
    Target(2, "cpu", "forward+backward float32 16M", speedup=4.0),
    Target(2, "cuda", "*", speedup=1.0, floor_share=0.85),
    Target(16, "cpu", "forward float32 16M", floor_share=0.9),
    Target(16, "cpu", "forward+backward float32 16M", floor_share=0.85),
]


def _composed(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


def _forward(n: int, dtype: torch.dtype, device: str):
    def setup():
        x = torch.randn(n, dtype=dtype, device=device)
        return {"torch F.mish": lambda: F.mish(x), "hotkernels": lambda: mish(x), "torch composed": lambda: _composed(x)}

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

        return {"torch F.mish": run(F.mish, a), "hotkernels": run(mish, b)}

    return setup


def _forward_backward(n: int, dtype: torch.dtype, device: str):
    def setup():
        x = torch.randn(n, dtype=dtype, device=device, requires_grad=True)
        g = torch.randn(n, dtype=dtype, device=device)
        return {"torch F.mish": input_grad(F.mish, x, g), "hotkernels": input_grad(mish, x, g),
                "torch composed": input_grad(_composed, x, g)}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    n = 1 << 20 if quick else 1 << 24
    size = f"{n >> 20}M"
    out = []
    dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
    for dtype in dtypes:
        b = torch.empty((), dtype=dtype).element_size()
        name = str(dtype).removeprefix("torch.")
        # Least traffic: forward reads x and writes a fresh y; in place, the copy that restores the
        # input each round (the same on both sides) reads x and overwrites y, and mish's update of y
        # may then run from the cache where the copy left y's last lines (a 64 MB y is within a few
        # last-level caches of it), so the least is the copy's; forward+backward: the forward, then
        # the backward reads x and g and writes a fresh dx, two passes (its floor: a clone, then a
        # binary elementwise op).
        case = dict(device=device, baselines=("torch F.mish",))
        out.append(Case("mish", f"forward {name} {size}", setup=_forward(n, dtype, device),
                        traffic=Traffic(read=n * b, write=(n * b,)), **case))
        out.append(Case("mish", f"forward in place {name} {size}", setup=_forward_inplace(n, dtype, device),
                        traffic=Traffic(read=n * b, overwrite=n * b), **case))
        forward, backward = Traffic(read=n * b, write=(n * b,)), Traffic(read=2 * n * b, write=(n * b,))
        out.append(Case("mish", f"forward+backward {name} {size}", setup=_forward_backward(n, dtype, device),
                        traffic=forward + backward, passes=(forward, backward), **case))
    return out
