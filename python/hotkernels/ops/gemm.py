r"""The CPU GEMM core: ``hotkernels::mm`` (:math:`C = A B`, float32 and float64, any strides) runs the
packed, register-blocked product that conv2d, linear and the LSTM are built on (csrc/cpu/gemm/gemm.h;
for 1 to 4 rows of A against a transposed, row-contiguous B, the unpacked product of a few rows), so
that the benchmarks and tests can hold that core to torch.mm and to the machine's floor.
``hotkernels::fma_peak_loop(isa, iterations)`` is that floor: a register-only FMA loop of one
instruction set on every intra-op thread, returning the floating-point operations it did.

Backward of ``mm`` is two more products on the core: :math:`dA = dC\,B^T`, :math:`dB = A^T dC`.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ._args import no_forward_ad, register_autograd

_ops = torch.ops.hotkernels


@torch.library.register_fake("hotkernels::mm")
def _mm_fake(self: Tensor, mat2: Tensor) -> Tensor:
    return self.new_empty(self.shape[0], mat2.shape[1])


def _mm_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _mm_grad(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    a, b = ctx.saved_tensors
    grad_a = _ops.mm(grad, b.T) if ctx.needs_input_grad[0] else None
    grad_b = _ops.mm(a.T, grad) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b


register_autograd("hotkernels::mm", _mm_grad, setup_context=_mm_setup)


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    r"""Matrix product on hotkernels' CPU GEMM core, like :func:`torch.mm`.

    Args:
        input: ``(n, m)``, float32 or float64, on the CPU, any strides.
        mat2: ``(m, p)``, same dtype.

    Returns:
        ``(n, p)``, contiguous.
    """
    no_forward_ad("hotkernels.mm", input, mat2)
    return _ops.mm(input, mat2)


def fma_peak_gflops(isa: str, seconds: float = 0.2) -> float:
    """GFLOP/s of the register-only FMA loop of ``isa`` (``"base"``, ``"avx2"`` or ``"avx512"``) on
    every intra-op thread: the most any float32 kernel of that instruction set can do here."""
    iterations = 1 << 16
    while True:
        start = time.perf_counter()
        flops = _ops.fma_peak_loop(isa, iterations)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return flops / elapsed / 1e9
        iterations *= 2
