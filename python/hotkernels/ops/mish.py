r"""Mish: :math:`\text{mish}(x) = x \cdot \tanh(\text{softplus}(x)) = x \cdot \tanh(\ln(1 + e^x))`.

Ops: ``hotkernels::mish``, ``hotkernels::mish_`` (in place) and ``hotkernels::mish_backward``
(:math:`g \cdot \text{mish}'(x)`). Backward saves only the input. The backward op has its own
autograd formula (below), so double backward works.
"""

import torch
from torch import Tensor

from ._args import no_forward_ad, register_autograd

_ops = torch.ops.hotkernels


@torch.library.register_fake("hotkernels::mish")
def _mish_fake(input: Tensor) -> Tensor:
    return torch.empty_like(input)


@torch.library.register_fake("hotkernels::mish_backward")
def _mish_backward_fake(grad_output: Tensor, input: Tensor) -> Tensor:
    return torch.empty_like(input)


def _save_inputs(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _mish_grad(ctx, grad_output: Tensor) -> Tensor:
    (input,) = ctx.saved_tensors
    return _ops.mish_backward(grad_output, input)


def _mish_second_derivative(x: Tensor) -> Tensor:
    r""":math:`\text{mish}''(x) = s\,(2 + x(1 - \sigma - 2t\sigma))` with :math:`t = \tanh(\text{softplus}(x))`,
    :math:`\sigma = \text{sigmoid}(x)`, :math:`s = (1 - t^2)\sigma`; composed of torch ops so that it
    is differentiable in turn."""
    t = torch.tanh(torch.nn.functional.softplus(x))
    sig = torch.sigmoid(x)
    s = (1 - t * t) * sig
    return s * (2 + x * (1 - sig - 2 * t * sig))


def _mish_backward_grad(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    grad_output, input = ctx.saved_tensors
    d_grad_output = _ops.mish_backward(grad, input) if ctx.needs_input_grad[0] else None
    d_input = grad * grad_output * _mish_second_derivative(input) if ctx.needs_input_grad[1] else None
    return d_grad_output, d_input


register_autograd("hotkernels::mish", _mish_grad, setup_context=_save_inputs)
register_autograd("hotkernels::mish_backward", _mish_backward_grad, setup_context=_save_inputs)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    r"""Applies Mish elementwise, like :func:`torch.nn.functional.mish`.

    .. math:: \text{mish}(x) = x \cdot \tanh(\text{softplus}(x))

    Args:
        input: a float32, float64, float16 or bfloat16 tensor of any shape and strides
            (float16 and bfloat16 compute in float32).
        inplace: overwrite ``input`` with the result. Without autograd this allocates nothing; when
            ``input`` requires grad, backward needs the original values, so they are kept in a copy
            (as torch does).

    Where :math:`x > 20`, :math:`\tanh(\text{softplus}(x))` rounds to 1 (as in softplus' threshold):
    there the result is ``x`` and the gradient ``grad_output``, also at :math:`x = +\infty`, where
    the derivative's limit is 1 and torch's formula gives ``inf · 0 = nan``.
    """
    no_forward_ad("hotkernels.mish", input)
    if not inplace:
        return _ops.mish(input)
    if torch.is_grad_enabled() and input.requires_grad:
        return input.copy_(_ops.mish(input.clone()))
    _ops.mish_(input)
    return input
