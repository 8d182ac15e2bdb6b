r"""2-D convolution, like :func:`torch.nn.functional.conv2d` (a cross-correlation):

.. math::
    y[n, k, o_y, o_x] = b[k] + \sum_{c \in \text{group}(k)} \sum_{i, j}
        w[k, c, i, j] \; x[n, c,\; o_y s_h - p_t + i d_h,\; o_x s_w - p_l + j d_w]

with zero outside the input. Ops (schemas in csrc/schemas.cpp; ``padding`` there is
``[top, left, bottom, right]``):

- ``hotkernels::conv2d(input, weight, bias, stride, padding, dilation, groups)``
- ``hotkernels::conv2d_backward_input(grad_output, weight, input_size, ...)``: the transposed
  convolution of ``grad_output`` with ``weight``;
- ``hotkernels::conv2d_backward_weight(grad_output, input, weight_size, ...)``: the correlation of
  ``input`` with ``grad_output``;
- ``hotkernels::conv2d_backward_bias(grad_output)``: its sum over batch and pixels.

All three gradients are linear in each argument and are themselves expressed through these ops, so
double backward works through ops.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from ._args import IntPair, no_forward_ad, pair, register_autograd

_ops = torch.ops.hotkernels

# conv2d's size arguments as two ints each (tests call it as _pair(value, name))
_pair = functools.partial(pair, op="hotkernels.conv2d")


# Output layouts as torch's convolutions give them (conv2d_output_format in csrc/conv2d.h):
# channels_last when the input or the weight suggests it, else contiguous; the gradients by the same
# rule with grad_output standing in for the argument their op lacks (backward hands grad_output over
# in the output's layout): (grad_output, weight) for the input gradient, (grad_output, input) for the
# weight gradient. On CUDA float64 is always contiguous: torch runs it on cuDNN (or its native
# depthwise kernel), which keep float64 in NCHW (output_format in csrc/cuda/conv2d.cu).
def _output_format(input: Tensor, weight: Tensor) -> torch.memory_format:
    if input.device.type == "cuda" and input.dtype == torch.float64:
        return torch.contiguous_format
    cl = _suggests_channels_last(input) or _suggests_channels_last(weight)
    return torch.channels_last if cl else torch.contiguous_format


def _suggests_channels_last(t: Tensor) -> bool:
    """``suggest_memory_format(t) == torch.channels_last`` for a 4-D ``t``. That rule walks the
    strides in Python (2-20 µs a call); a non-empty plain strided tensor (or parameter) with NCHW's
    own strides (C·H·W, H·W, W, 1) is never channels_last by it, and one with channels_last's own
    (H·W·C, 1, W·C, C) always is, except C = H = W = 1, where both coincide and torch says not."""
    if type(t) in (torch.Tensor, torch.nn.Parameter) and t.layout == torch.strided and t.numel() > 0:
        _, c, h, w = t.shape
        strides = t.stride()
        if strides == (c * h * w, h * w, w, 1):
            return False
        if strides == (h * w * c, 1, w * c, c):
            return True
    return suggest_memory_format(t) == torch.channels_last


def _empty_in_format(shape: Sequence[int], like: Tensor, weight: Tensor) -> Tensor:
    """Uninitialised ``shape`` with ``like``'s dtype and device, in ``_output_format(like, weight)``."""
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=_output_format(like, weight))


@torch.library.register_fake("hotkernels::conv2d")
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups):
    torch._check(input.dim() == 4, lambda: "hotkernels.conv2d: expected 'input' to be 4-D")
    torch._check(weight.dim() == 4, lambda: "hotkernels.conv2d: expected 'weight' to be 4-D")
    for extent in input.shape[2:]:
        torch._check(extent > 0, lambda: "hotkernels.conv2d: expected 'input' to have non-zero height and width "
                     f"(only a zero batch is supported), but got input of size: {list(input.shape)}")
    # the padded input and the dilated kernel's extents; the op refuses a kernel larger than the input
    # (conv2d_geometry in csrc/conv2d.h, torch's message), so the output has at least one pixel
    hp, wp = input.shape[2] + padding[0] + padding[2], input.shape[3] + padding[1] + padding[3]
    eh, ew = dilation[0] * (weight.shape[2] - 1) + 1, dilation[1] * (weight.shape[3] - 1) + 1
    for padded, extent in ((hp, eh), (wp, ew)):
        torch._check(padded >= extent, lambda: f"hotkernels.conv2d: Calculated padded input size per channel: ({hp} x "
                     f"{wp}). Kernel size: ({eh} x {ew}). Kernel size can't be greater than actual input size")
    oh, ow = (hp - eh) // stride[0] + 1, (wp - ew) // stride[1] + 1
    return _empty_in_format((input.shape[0], weight.shape[0], oh, ow), input, weight)


@torch.library.register_fake("hotkernels::conv2d_backward_input")
def _conv2d_backward_input_fake(grad_output, weight, input_size, stride, padding, dilation, groups):
    return _empty_in_format(input_size, grad_output, weight)


@torch.library.register_fake("hotkernels::conv2d_backward_weight")
def _conv2d_backward_weight_fake(grad_output, input, weight_size, stride, padding, dilation, groups):
    return _empty_in_format(weight_size, grad_output, input)


@torch.library.register_fake("hotkernels::conv2d_backward_bias")
def _conv2d_backward_bias_fake(grad_output):
    return grad_output.new_empty((grad_output.shape[1],))


def _conv_args(ctx) -> tuple:
    return ctx.stride, ctx.padding, ctx.dilation, ctx.groups


def _save_conv(ctx, inputs, output) -> None:
    ctx.stride, ctx.padding, ctx.dilation, ctx.groups = inputs[-4:]


def _setup_conv2d(ctx, inputs, output) -> None:
    input, weight, bias = inputs[:3]
    _save_conv(ctx, inputs, output)
    ctx.has_bias = bias is not None
    ctx.save_for_backward(input, weight)


def _conv2d_grad(ctx, grad_output: Tensor):
    input, weight = ctx.saved_tensors
    args = _conv_args(ctx)
    # grad_output in the layout the gradients should take (torch's, from input and weight), which the
    # gradient ops read it from; it may come in another (an expanded ones from .sum()), and the
    # kernels copy it to dense anyway.
    gy = grad_output.contiguous(memory_format=_output_format(input, weight))
    gx = _ops.conv2d_backward_input(gy, weight, list(input.shape), *args) if ctx.needs_input_grad[0] else None
    gw = _ops.conv2d_backward_weight(gy, input, list(weight.shape), *args) if ctx.needs_input_grad[1] else None
    gb = _ops.conv2d_backward_bias(grad_output) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None, None, None, None


def _setup_backward_input(ctx, inputs, output) -> None:
    grad_output, weight = inputs[:2]
    _save_conv(ctx, inputs, output)
    ctx.save_for_backward(grad_output, weight)


def _backward_input_grad(ctx, grad: Tensor):
    # gx = convT(gy, w) is bilinear: <grad, gx> = <conv(grad, w), gy> = <grad_weight(gy, grad), w>.
    grad_output, weight = ctx.saved_tensors
    args = _conv_args(ctx)
    d_gy = _ops.conv2d(grad, weight, None, *args) if ctx.needs_input_grad[0] else None
    d_w = _ops.conv2d_backward_weight(grad_output, grad, list(weight.shape), *args) if ctx.needs_input_grad[1] else None
    return d_gy, d_w, None, None, None, None, None


def _setup_backward_weight(ctx, inputs, output) -> None:
    grad_output, input = inputs[:2]
    _save_conv(ctx, inputs, output)
    ctx.save_for_backward(grad_output, input)


def _backward_weight_grad(ctx, grad: Tensor):
    # gw = corr(x, gy): <grad, gw> = <conv(x, grad), gy> = <convT(gy, grad), x>.
    grad_output, input = ctx.saved_tensors
    args = _conv_args(ctx)
    d_gy = _ops.conv2d(input, grad, None, *args) if ctx.needs_input_grad[0] else None
    d_x = _ops.conv2d_backward_input(grad_output, grad, list(input.shape), *args) if ctx.needs_input_grad[1] else None
    return d_gy, d_x, None, None, None, None, None


def _setup_backward_bias(ctx, inputs, output) -> None:
    ctx.shape = inputs[0].shape


def _backward_bias_grad(ctx, grad: Tensor):
    return grad.view(1, -1, 1, 1).expand(ctx.shape)


register_autograd("hotkernels::conv2d", _conv2d_grad, setup_context=_setup_conv2d)
register_autograd("hotkernels::conv2d_backward_input", _backward_input_grad,
                  setup_context=_setup_backward_input)
register_autograd("hotkernels::conv2d_backward_weight", _backward_weight_grad,
                  setup_context=_setup_backward_weight)
register_autograd("hotkernels::conv2d_backward_bias", _backward_bias_grad,
                  setup_context=_setup_backward_bias)


def conv2d_padding(padding: Union[str, IntPair], weight_shape: Sequence[int], stride: list[int],
                   dilation: list[int]) -> list[int]:
    """``[top, left, bottom, right]`` for an int, a pair, ``'valid'`` or ``'same'`` (as F.conv2d: the
    odd one out of an even total padding goes at the end)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0, 0, 0]
        if padding != "same":
            raise ValueError(f"Invalid padding string '{padding}', should be one of ['valid', 'same']")
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for d, k in zip(dilation, weight_shape[2:])]
        begin = [t // 2 for t in total]
        return [begin[0], begin[1], total[0] - begin[0], total[1] - begin[1]]
    ph, pw = _pair(padding, "padding")
    return [ph, pw, ph, pw]


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: IntPair = 1,
           padding: Union[str, IntPair] = 0, dilation: IntPair = 1, groups: int = 1) -> Tensor:
    r"""Applies a 2-D convolution over an input of shape ``(N, C_in, H, W)`` or ``(C_in, H, W)``,
    like :func:`torch.nn.functional.conv2d`.

    .. math:: y[n, k] = b[k] + \sum_{c \in \text{group}(k)} w[k, c] \star x[n, c]

    On CUDA, float32 runs on TF32 tensor cores when ``torch.backends.cudnn.allow_tf32`` is True
    (torch's default for convolutions; read on every call, like cuDNN) and exactly in FP32 otherwise;
    float16/bfloat16 use tensor cores with float32 accumulation, float64 and depthwise run exactly.
    Under :class:`torch.autocast` it computes in the autocast dtype, as F.conv2d: its floating
    arguments but float64 ones are cast to it (autograd takes the gradients back to their dtypes).

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; any strides (channels_last is
            accepted). float32, float64, float16 or bfloat16 (half types accumulate in float32).
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, dilation: an int or a pair.
        padding: an int, a pair, ``'valid'`` (none) or ``'same'`` (output size = input size;
            stride 1 only).
        groups: splits input and output channels into that many independent convolutions.
    """
    no_forward_ad("hotkernels.conv2d", input, weight, bias)
    stride_ = _pair(stride, "stride")
    dilation_ = _pair(dilation, "dilation")
    if input.dim() not in (3, 4):
        raise RuntimeError(
            "hotkernels.conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
            f"{list(input.shape)}"
        )
    if weight.dim() != 4:
        raise RuntimeError(f"hotkernels.conv2d: expected 'weight' to be 4-D, but got weight of size: {list(weight.shape)}")
    pad = conv2d_padding(padding, weight.shape, stride_, dilation_)
    if input.dim() == 3:
        return _ops.conv2d(input.unsqueeze(0), weight, bias, stride_, pad, dilation_, groups).squeeze(0)
    return _ops.conv2d(input, weight, bias, stride_, pad, dilation_, groups)
