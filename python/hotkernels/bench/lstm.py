"""LSTM benchmark cases: hotkernels.nn.LSTMCell / LSTM vs torch.nn.LSTMCell / LSTM (the baselines;
same state_dict).

Cell cases time one step as inside an unrolled sequence: the input and the state (h, c) require
grad, so forward+backward computes every gradient (input, state, weights, biases). LSTM cases feed
a data sequence (no input grad) with a zero initial state and backpropagate through time into
every parameter.

On the CPU our GEMMs are our own (csrc/cpu/gemm/), with the pointwise passes in their epilogues;
torch's nn.LSTMCell runs its BLAS and separate elementwise passes, nn.LSTM (float32) oneDNN's
fused RNN primitive, and on a PackedSequence torch's native per-step loop. Forward-only cases run
without grad (inference). The packed case feeds lengths spread over [T/2, T] (enforce_sorted=False).
The language-model training step is a whole-model case (:mod:`hotkernels.bench.models`).
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from . import Case, Target
from .. import nn as hnn

# Against torch (on the GPU, nn.LSTM runs cuDNN's); on the CPU, the LSTM on our GEMM core.
TARGETS = [
    Target(15, "cpu", "LSTMCell forward+backward float32 B64 I256 H512", speedup=1.5),
    Target(6, "cpu", "LSTMCell forward+backward float32 B256 I1024 H1024", speedup=1.15),
    Target(15, "cpu", "LSTM forward+backward float32 T50 B32 I256 H512 L2", speedup=1.2),
    Target(15, "cpu", "LSTM forward float32 T50 B32 I256 H512 L2", speedup=1.0),
    Target(15, "cpu", "LSTM forward float32 T200 B1 I256 H512 L2", speedup=1.0),
    Target(15, "cpu", "LSTM forward+backward packed *", speedup=2.5),
    Target(6, "cuda", "LSTMCell *", speedup=1.3),
    Target(6, "cuda", "LSTM *", speedup=0.8),
]


def _cell_setup(batch: int, inp: int, hidden: int, device: str, backward: bool):
    def setup():
        ref = torch.nn.LSTMCell(inp, hidden).to(device)
        ours = hnn.LSTMCell(inp, hidden).to(device)
        ours.load_state_dict(ref.state_dict())
        x, h, c = (torch.randn(batch, n, device=device, requires_grad=backward) for n in (inp, hidden, hidden))
        gh, gc = torch.randn(batch, hidden, device=device), torch.randn(batch, hidden, device=device)
        leaves = [x, h, c]

        def run(module):
            if not backward:
                def forward():
                    with torch.no_grad():
                        return module(x, (h, c))

                return forward

            def step():
                hy, cy = module(x, (h, c))
                return torch.autograd.grad((hy, cy), leaves + list(module.parameters()), (gh, gc))

            return step

        return {"torch nn.LSTMCell": run(ref), "hotkernels": run(ours)}

    return setup


def _lstm_setup(steps: int, batch: int, inp: int, hidden: int, layers: int, device: str, backward: bool = True,
                packed: bool = False):
    def setup():
        ref = torch.nn.LSTM(inp, hidden, layers).to(device)
        ours = hnn.LSTM(inp, hidden, layers).to(device)
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(steps, batch, inp, device=device)
        if packed:
            x = pack_padded_sequence(x, _lengths(steps, batch), enforce_sorted=False)
        gy = torch.randn((x.data if packed else x).shape[:-1] + (hidden,), device=device)

        def run(module):
            def forward():
                with torch.no_grad():
                    return module(x)[0]

            def step():
                y, _ = module(x)
                return torch.autograd.grad(y.data if packed else y, list(module.parameters()), gy)

            return step if backward else forward

        return {"torch nn.LSTM": run(ref), "hotkernels": run(ours)}

    return setup


def _lengths(steps: int, batch: int) -> torch.Tensor:
    """The packed case's sequence lengths: spread over [steps/2, steps], the same every run."""
    return torch.randint(steps // 2, steps + 1, (batch,), generator=torch.Generator().manual_seed(0))


def _lstm_flops(rows: int, batch: int, inp: int, hidden: int, layers: int, backward: bool) -> int:
    """An nn.LSTM's GEMM flops over `rows` sequence rows (steps × batch, or a packed batch's rows) of
    `batch` sequences: per layer the input projection and the recurrent products; backward three
    times that, less the first layer's input gradient (its data needs none) and each layer's
    gradient into its initial state (none asked), as torch's FlopCounterMode counts them."""
    forward = [2 * rows * (i + hidden) * 4 * hidden for i in [inp] + [hidden] * (layers - 1)]
    unasked = 2 * rows * inp * 4 * hidden + layers * 2 * batch * hidden * 4 * hidden
    return 3 * sum(forward) - unasked if backward else sum(forward)


def _cell_flops(batch: int, inp: int, hidden: int, backward: bool) -> int:
    forward = 2 * batch * (inp + hidden) * 4 * hidden  # the two gate GEMMs
    return forward * (3 if backward else 1)  # backward: d(input, h) and d(w_ih, w_hh)


def cases(device: str, quick: bool = False) -> list[Case]:
    cells = [(16, 64, 128), (64, 256, 256)] if quick else [(64, 256, 512), (256, 1024, 1024)]
    T, B, I, H, L = (10, 8, 64, 128, 2) if quick else (50, 32, 256, 512, 2)
    out = []
    for batch, inp, hidden in cells:
        size = f"B{batch} I{inp} H{hidden}"
        for backward in (False, True):
            name = f"LSTMCell {'forward+backward' if backward else 'forward'} float32 {size}"
            out.append(Case("lstm", name, device, _cell_setup(batch, inp, hidden, device, backward),
                            baselines=("torch nn.LSTMCell",), flops=_cell_flops(batch, inp, hidden, backward)))
    out.append(Case("lstm", f"LSTM forward+backward float32 T{T} B{B} I{I} H{H} L{L}", device,
                    _lstm_setup(T, B, I, H, L, device), baselines=("torch nn.LSTM",),
                    flops=_lstm_flops(T * B, B, I, H, L, backward=True)))
    out.append(Case("lstm", f"LSTM forward float32 T{T} B{B} I{I} H{H} L{L}", device,
                    _lstm_setup(T, B, I, H, L, device, backward=False), baselines=("torch nn.LSTM",),
                    flops=_lstm_flops(T * B, B, I, H, L, backward=False)))
    t1 = 20 if quick else 200  # one sequence: a latency case, each step a matrix-vector product
    out.append(Case("lstm", f"LSTM forward float32 T{t1} B1 I{I} H{H} L{L}", device,
                    _lstm_setup(t1, 1, I, H, L, device, backward=False), baselines=("torch nn.LSTM",),
                    flops=_lstm_flops(t1, 1, I, H, L, backward=False)))
    out.append(Case("lstm", f"LSTM forward+backward packed float32 T{T} B{B} I{I} H{H} L{L} (lengths {T // 2}-{T})",
                    device, _lstm_setup(T, B, I, H, L, device, packed=True), baselines=("torch nn.LSTM",),
                    flops=_lstm_flops(int(_lengths(T, B).sum()), B, I, H, L, backward=True)))
    return out
