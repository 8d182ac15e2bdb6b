"""GEMM core benchmark cases (CPU only; CUDA's GEMMs are cuBLAS): ``hotkernels.ops.gemm.mm`` against
``torch.mm`` (its BLAS), float32, on a square product and on the LSTM's own shapes (T=50, B=32,
I=256, H=512: a step's recurrent product, the input projection of all steps, the weight gradient
over all steps). Each call includes the packing of both operands, as torch.mm's does.
"""

from __future__ import annotations

import torch

from . import Case, Target
from ..ops.gemm import mm

# The core at >= 85% of the machine's FMA peak on 2048², and no slower than torch.mm on the LSTM's
# shapes.
TARGETS = [
    Target(15, "cpu", "mm float32 2048x2048x2048", floor_share=0.85),
    Target(15, "cpu", "mm float32 * (LSTM *)", speedup=1.0),
]

# m, k, n, what it is
_SHAPES = [
    (2048, 2048, 2048, ""),
    (32, 512, 2048, " (LSTM step)"),
    (1600, 256, 2048, " (LSTM input projection)"),
    (2048, 1600, 512, " (LSTM weight gradient)"),
]


def _setup(m: int, k: int, n: int):
    def setup():
        a, b = torch.randn(m, k), torch.randn(k, n)
        return {"torch mm": lambda: torch.mm(a, b), "hotkernels": lambda: mm(a, b)}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    if device != "cpu":
        return []
    out = []
    for m, k, n, what in _SHAPES:
        if quick:  # a quarter of the rows and columns
            m, n = m // 4, n // 4
        out.append(Case("gemm", f"mm float32 {m}x{k}x{n}{what}", device, _setup(m, k, n), baselines=("torch mm",),
                        flops=2 * m * k * n))
    return out
