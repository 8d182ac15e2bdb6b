r"""Linear: :math:`y = x W^T + b` over the last dimension of :math:`x`, on the CPU GEMM core.

Op: ``hotkernels::linear(input, weight, bias)`` (csrc/cpu/linear.cpp; CPU only, like
``hotkernels::mm``: on CUDA, torch's linear is cuBLAS's GEMM). Its backward is the same op twice,
:math:`dx = dy\,W` and :math:`dW = dy^T x` (over all leading dimensions of :math:`x` as rows), and
:math:`db = \sum_\text{rows} dy`; backward saves only the input and the weight, and double backward
works because the backward is made of the op itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._args import no_forward_ad, register_autograd

_ops = torch.ops.hotkernels


@torch.library.register_fake("hotkernels::linear")
def _linear_fake(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    torch._check(input.dim() >= 1 and weight.dim() == 2 and input.shape[-1] == weight.shape[1],
                 lambda: f"hotkernels.linear: expected input (..., {weight.shape[-1]}), got {tuple(input.shape)}")
    torch._check(bias is None or (bias.dim() == 1 and bias.shape[0] == weight.shape[0]),
                 lambda: f"hotkernels.linear: expected 'bias' to have shape ({weight.shape[0]},)")
    return input.new_empty(*input.shape[:-1], weight.shape[0])


def _linear_setup(ctx, inputs, output) -> None:
    input, weight, bias = inputs
    ctx.has_bias = bias is not None  # without one, needs_input_grad has no entry for it
    ctx.save_for_backward(input, weight)


def _linear_grad(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    input, weight = ctx.saved_tensors
    rows = math.prod(input.shape[:-1])  # every leading dimension (explicit: a size may be 0)
    grad_rows = grad.reshape(rows, weight.shape[0])
    grad_input = _ops.linear(grad, weight.T) if ctx.needs_input_grad[0] else None
    grad_weight = (_ops.linear(grad_rows.T, input.reshape(rows, weight.shape[1]).T)
                   if ctx.needs_input_grad[1] else None)
    grad_bias = grad_rows.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_input, grad_weight, grad_bias


register_autograd("hotkernels::linear", _linear_grad, setup_context=_linear_setup)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""Applies an affine map to the last dimension of ``input``, like
    :func:`torch.nn.functional.linear`, on hotkernels' CPU GEMM core.

    .. math:: y = x W^T + b

    Args:
        input: ``(*, in_features)``, float32, float64, float16 or bfloat16 (the last two computed in
            float32 and rounded once), on the CPU.
        weight: ``(out_features, in_features)``, same dtype.
        bias: ``(out_features)``, same dtype, or ``None``.

    Returns:
        ``(*, out_features)``.
    """
    no_forward_ad("hotkernels.linear", input, weight, bias)
    if not (input.is_cpu and weight.is_cpu and (bias is None or bias.is_cpu)):  # the common case in one test
        for name, t in (("input", input), ("weight", weight), ("bias", bias)):
            if t is not None and t.device.type not in ("cpu", "meta"):
                raise RuntimeError(f"hotkernels.linear: expected '{name}' on the CPU, but got {t.device.type} (the "
                                   "GEMM core is CPU-only; elsewhere torch.nn.functional.linear is the vendor's GEMM)")
    return _ops.linear(input, weight, bias)
