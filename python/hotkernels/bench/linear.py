"""Linear benchmark cases (CPU only; on CUDA hotkernels.nn.Linear is torch's): ``hotkernels.nn.Linear``
against ``torch.nn.Linear`` (its BLAS), float32, with bias: the language model's head (Linear(512,
1000) over B=32 × T=50 rows, as in ``models.py``), an MLP layer of 1024 features at batch 64, the
head at batch 1, and a layer small enough that the time is the call's own (dispatch, autograd).
Forward runs without autograd (inference: ``torch.no_grad()``); forward+backward computes the
gradients of the input, the weight and the bias, and its flops are the three products'.
"""

from __future__ import annotations

import torch
from torch import nn

from . import Case, Target
from ..nn import Linear

# No issue sets a target of its own for Linear: the language model step's (models.py) includes it.
TARGETS: list[Target] = []

# rows, in_features, out_features, what it is
_SHAPES = [
    (1600, 512, 1000, " (language model head)"),
    (64, 1024, 1024, ""),
    (1, 512, 1000, " (language model head, batch 1)"),
    (32, 64, 64, " (small: the call's own cost)"),
]


def _setup(rows: int, k: int, n: int, backward: bool):
    def setup():
        torch.manual_seed(0)
        theirs = nn.Linear(k, n)
        ours = Linear(k, n)
        ours.load_state_dict(theirs.state_dict())
        x = torch.randn(rows, k, requires_grad=backward)
        g = torch.randn(rows, n)

        def run(layer: nn.Module):
            def forward():
                with torch.no_grad():
                    return layer(x)

            def step():
                return torch.autograd.grad(layer(x), (x, layer.weight, layer.bias), g)

            return step if backward else forward

        return {"torch nn.Linear": run(theirs), "hotkernels": run(ours)}

    return setup


def cases(device: str, quick: bool = False) -> list[Case]:
    if device != "cpu":
        return []
    out = []
    for rows, k, n, what in _SHAPES:
        if quick:
            rows = max(1, rows // 4)
        for backward in (False, True):
            if backward and rows == 1:
                continue
            mode = "forward+backward" if backward else "forward"
            out.append(Case("linear", f"{mode} float32 {rows}x{k}->{n}{what}", device,
                            _setup(rows, k, n, backward), baselines=("torch nn.Linear",),
                            flops=(3 if backward else 1) * 2 * rows * k * n))
    return out
