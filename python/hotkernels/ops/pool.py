r"""2-D max and average pooling, drop-in for :func:`torch.nn.functional.max_pool2d` and
:func:`torch.nn.functional.avg_pool2d`.

For output :math:`(o_h, o_w)` the window starts at :math:`(o_h s_H - p_H,\ o_w s_W - p_W)` and takes
:math:`k_H \times k_W` taps, :math:`d_H` rows and :math:`d_W` columns apart (max only):

.. math::
    \text{max}: y_{o_h o_w} = \max_{i, j} x_{o_h s_H - p_H + i d_H,\ o_w s_W - p_W + j d_W} \qquad
    \text{avg}: y_{o_h o_w} = \frac{1}{D} \sum_{i, j} x_{o_h s_H - p_H + i,\ o_w s_W - p_W + j}

Max skips padded taps and propagates NaN; its indices are flat ``h * W + w`` positions in the input
plane, exactly torch's (the first maximum in row-major order, or the last NaN). Average counts padded
taps as zeros; :math:`D` is ``divisor_override``, else the window size over the padded input
(``count_include_pad``) or over the input only.

Ops (schemas in csrc/schemas.cpp): ``max_pool2d`` (values only, for inference: torch's values,
reduced in another order, so where a window's maximum is both +0 and −0, or it holds several NaNs,
the one returned may differ from torch's bit for bit),
``max_pool2d_with_indices`` (torch's int64 indices, for ``return_indices=True``),
``max_pool2d_backward(grad_output, input, indices, ...)`` (grad_output routed by indices; its own
backward is a gather by indices), ``max_pool2d_with_offsets`` and
``max_pool2d_offsets_backward(grad_output, input, offsets, ...)`` (what autograd uses otherwise: per
output a uint8 offset :math:`k_h k_W + k_w`, the maximum's tap within its window, one byte instead of
torch's eight, for windows of at most :data:`MAX_OFFSET_TAPS` taps; the backward sums, for each
input element, the output gradients of the windows covering it whose offset names it, and writes it
once: a gather, or a scatter into a plane held in cache; its own backward gathers grad by offsets),
``avg_pool2d`` and ``avg_pool2d_backward`` (the adjoint of average pooling; its own backward is
average pooling). All take kernel_size, stride, padding and dilation as two ints each:
:func:`pool2d_geometry`, the one place that expands and checks torch's arguments and computes the
output size, serves the functional API, the modules and the fake kernels (csrc/pool.h repeats it
check for check, with the same messages, in the C++ ops).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from ._args import IntPair, no_forward_ad, non_differentiable, pair, register_autograd

_ops = torch.ops.hotkernels

#: The most taps (``kH * kW``) a window may have for its argmax to be saved as a uint8 offset
#: (csrc/math/pool.h ``kMaxOffsetTaps``); larger windows save torch's int64 indices.
MAX_OFFSET_TAPS = 256


def _output_size(op: str, size, k, pad, s, d, ceil_mode: bool):
    """torch's pooling_output_shape: the window count along one dimension (floor, or ceil with the
    last window starting inside the input or its left padding)."""
    if s == 0:
        raise RuntimeError(f"{op}: stride should not be zero")
    if pad < 0:
        raise RuntimeError(f"{op}: pad must be non-negative, but got pad: {pad}")
    if pad > ((k - 1) * d + 1) // 2:
        raise RuntimeError(
            f"{op}: pad should be at most half of effective kernel size, but got pad={pad}, kernel_size={k} and "
            f"dilation={d}"
        )
    out = (size + 2 * pad - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + pad:
        out = out - 1
    return out


@dataclass(frozen=True)
class Pool2dGeometry:
    kernel_size: list[int]
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    output_shape: list[int]


def pool2d_geometry(
    op: str,
    shape: Sequence[int],
    kernel_size: IntPair,
    stride: IntPair | None,
    padding: IntPair,
    dilation: IntPair,
    ceil_mode: bool,
) -> Pool2dGeometry:
    """Expands torch's pooling arguments to two ints each (``stride`` defaults to ``kernel_size``),
    checks them and the input shape like torch does (same order; torch's messages behind the op's
    name, which torch's own do not always carry) and computes the output shape. ``op`` is
    ``"max_pool2d"`` or ``"avg_pool2d"`` (whose dilation is 1)."""
    op = f"hotkernels.{op}"
    k = pair(kernel_size, "kernel_size", op, "must either be a single int, or a tuple of two ints")
    omitted = stride is None or (isinstance(stride, Sequence) and not stride)  # torch's modules pass []
    s = k if omitted else pair(stride, "stride", op, "must either be omitted, a single int, or a tuple of two ints")
    p = pair(padding, "padding", op, "must either be a single int, or a tuple of two ints")
    d = pair(dilation, "dilation", op, "must be either a single int, or a tuple of two ints")
    for arg, values in (("kernel_size", k), ("stride", s), ("padding", p), ("dilation", d)):
        # torch's pooling takes these as int: "value cannot be converted to type int without overflow"
        if any(not isinstance(v, torch.SymInt) and not -(2**31) <= v < 2**31 for v in values):
            raise RuntimeError(f"{op}: expected '{arg}' to fit in 32 bits, as torch's pooling takes it, but got {values}")
    if len(shape) not in (3, 4):
        raise RuntimeError(f"{op}: non-empty 3D or 4D (batch mode) tensor expected for input")
    C, H, W = shape[-3], shape[-2], shape[-1]
    OH = _output_size(op, H, k[0], p[0], s[0], d[0], ceil_mode)
    OW = _output_size(op, W, k[1], p[1], s[1], d[1], ceil_mode)
    if k[0] <= 0 or k[1] <= 0:
        raise RuntimeError(f"{op}: kernel size should be greater than zero, but got kH: {k[0]} kW: {k[1]}")
    if s[0] <= 0 or s[1] <= 0:
        raise RuntimeError(f"{op}: stride should be greater than zero, but got dH: {s[0]} dW: {s[1]}")
    if d[0] <= 0 or d[1] <= 0:
        raise RuntimeError(f"{op}: dilation should be greater than zero, but got dilationH: {d[0]} dilationW: {d[1]}")
    if C == 0 or H == 0 or W == 0:
        raise RuntimeError(
            f"{op}: Expected 3D or 4D (batch mode) tensor with optional 0 dim batch size for input, but got:{list(shape)}"
        )
    if k[1] // 2 < p[1] or k[0] // 2 < p[0]:
        raise RuntimeError(
            f"{op}: pad should be smaller than or equal to half of kernel size, but got "
            f"padW = {p[1]}, padH = {p[0]}, kW = {k[1]}, kH = {k[0]}"
        )
    if OH < 1 or OW < 1:
        raise RuntimeError(
            f"{op}: Given input size: ({C}x{H}x{W}). Calculated output size: ({C}x{OH}x{OW}). Output size is too small"
        )
    return Pool2dGeometry(k, s, p, d, [*shape[:-2], OH, OW])


def _check_divisor(op: str, divisor_override: int | None) -> None:
    if divisor_override is not None and divisor_override == 0:
        raise RuntimeError(f"hotkernels.{op}: divisor must be not zero")


def _memory_format(input: Tensor) -> torch.memory_format:
    """The layout pooling keeps: channels_last for a 4-D input that suggests it (as torch's kernels)."""
    return suggest_memory_format(input) if input.dim() == 4 else torch.contiguous_format


def _empty(input: Tensor, shape: Sequence[int], dtype: torch.dtype | None = None) -> Tensor:
    return torch.empty(shape, dtype=dtype or input.dtype, device=input.device, memory_format=_memory_format(input))


# --- fake kernels -------------------------------------------------------------------------------------


@torch.library.register_fake("hotkernels::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride, padding, dilation, ceil_mode) -> Tensor:
    g = pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty(input, g.output_shape)


@torch.library.register_fake("hotkernels::max_pool2d_with_indices")
def _max_pool2d_with_indices_fake(input, kernel_size, stride, padding, dilation, ceil_mode) -> tuple[Tensor, Tensor]:
    g = pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty(input, g.output_shape), _empty(input, g.output_shape, torch.int64)


@torch.library.register_fake("hotkernels::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, input, indices, kernel_size, stride, padding, dilation, ceil_mode) -> Tensor:
    pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    return _empty(input, input.shape, grad_output.dtype)


def _check_offset_taps(op: str, kernel_size: Sequence[int]) -> None:
    if kernel_size[0] * kernel_size[1] > MAX_OFFSET_TAPS:
        raise RuntimeError(
            f"hotkernels.{op}: expected 'kernel_size' to have at most {MAX_OFFSET_TAPS} taps (uint8 offsets), but got "
            f"{kernel_size[0]}x{kernel_size[1]}; larger windows need max_pool2d_with_indices"
        )


@torch.library.register_fake("hotkernels::max_pool2d_with_offsets")
def _max_pool2d_with_offsets_fake(input, kernel_size, stride, padding, dilation, ceil_mode) -> tuple[Tensor, Tensor]:
    g = pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_offset_taps("max_pool2d_with_offsets", g.kernel_size)
    return _empty(input, g.output_shape), _empty(input, g.output_shape, torch.uint8)


@torch.library.register_fake("hotkernels::max_pool2d_offsets_backward")
def _max_pool2d_offsets_backward_fake(grad_output, input, offsets, kernel_size, stride, padding, dilation,
                                      ceil_mode) -> Tensor:
    g = pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    _check_offset_taps("max_pool2d_offsets_backward", g.kernel_size)
    return _empty(input, input.shape, grad_output.dtype)


@torch.library.register_fake("hotkernels::avg_pool2d")
def _avg_pool2d_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override) -> Tensor:
    g = pool2d_geometry("avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_divisor("avg_pool2d", divisor_override)
    return _empty(input, g.output_shape)


@torch.library.register_fake("hotkernels::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override) -> Tensor:
    pool2d_geometry("avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_divisor("avg_pool2d_backward", divisor_override)
    return _empty(input, input.shape, grad_output.dtype)


# --- autograd -----------------------------------------------------------------------------------------


def _save_input_and_args(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.args = inputs[1:]


def _uses_offsets(kernel_size: Sequence[int]) -> bool:
    """Whether autograd saves uint8 window offsets (else torch's int64 indices) for this window."""
    return kernel_size[0] * kernel_size[1] <= MAX_OFFSET_TAPS


def _max_pool2d_grad(ctx, grad_output: Tensor):
    # The values-only op has no argmax: recompute it (the functional API uses max_pool2d_with_offsets
    # or _with_indices whenever a gradient will be needed, so this is a fallback for direct calls).
    (input,) = ctx.saved_tensors
    if _uses_offsets(ctx.args[0]):
        _, offsets = _ops.max_pool2d_with_offsets(input, *ctx.args)
        grad = _ops.max_pool2d_offsets_backward(grad_output, input, offsets, *ctx.args)
    else:
        _, indices = _ops.max_pool2d_with_indices(input, *ctx.args)
        grad = _ops.max_pool2d_backward(grad_output, input, indices, *ctx.args)
    return (grad,) + (None,) * len(ctx.args)


def _save_max_with_indices(ctx, inputs, output) -> None:
    non_differentiable(ctx, output[1])
    ctx.save_for_backward(inputs[0], output[1])
    ctx.args = inputs[1:]


def _max_pool2d_with_indices_grad(ctx, grad_output: Tensor | None, grad_indices: Tensor | None):
    input, indices = ctx.saved_tensors
    grad = None if grad_output is None else _ops.max_pool2d_backward(grad_output, input, indices, *ctx.args)
    return (grad,) + (None,) * len(ctx.args)


def _gather_by_indices(grad: Tensor, indices: Tensor) -> Tensor:
    """out[..., o] = grad[..., indices[..., o]] per plane: the adjoint of max_pool2d_backward's scatter."""
    flat = torch.gather(grad.flatten(-2), -1, indices.flatten(-2))
    return flat.view(indices.shape).contiguous(memory_format=_memory_format(indices))


def _save_max_backward(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[2])
    ctx.nargs = len(inputs) - 3


def _max_pool2d_backward_grad(ctx, grad: Tensor):
    # Linear in grad_output; piecewise constant (zero derivative) in input; indices are integers.
    (indices,) = ctx.saved_tensors
    d_grad_output = _gather_by_indices(grad, indices) if ctx.needs_input_grad[0] else None
    return (d_grad_output, None, None) + (None,) * ctx.nargs


def _max_pool2d_with_offsets_grad(ctx, grad_output: Tensor | None, grad_offsets: Tensor | None):
    input, offsets = ctx.saved_tensors
    grad = None if grad_output is None else _ops.max_pool2d_offsets_backward(grad_output, input, offsets, *ctx.args)
    return (grad,) + (None,) * len(ctx.args)


def _save_offsets_backward(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[2])
    ctx.input_shape = inputs[1].shape
    ctx.args = inputs[3:]


def _max_pool2d_offsets_backward_grad(ctx, grad: Tensor):
    # Linear in grad_output, whose adjoint reads grad at the tap each offset names: input position
    # (oh·sH − pH + kh·dH, ow·sW − pW + kw·dW), nothing for a window wholly in the padding.
    (offsets,) = ctx.saved_tensors
    d_grad_output = None
    if ctx.needs_input_grad[0]:
        (kH, kW), (sH, sW), (pH, pW), (dH, dW) = ctx.args[:4]
        H, W = ctx.input_shape[-2:]
        taps = offsets.long()
        oh = torch.arange(offsets.shape[-2], device=offsets.device).view(-1, 1)
        ow = torch.arange(offsets.shape[-1], device=offsets.device)
        ih = oh * sH - pH + taps.div(kW, rounding_mode="floor") * dH
        iw = ow * sW - pW + taps.remainder(kW) * dW
        inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        d_grad_output = _gather_by_indices(grad, torch.where(inside, ih * W + iw, 0)).masked_fill(~inside, 0)
    return (d_grad_output, None, None) + (None,) * len(ctx.args)


def _avg_pool2d_grad(ctx, grad_output: Tensor):
    (input,) = ctx.saved_tensors
    return (_ops.avg_pool2d_backward(grad_output, input, *ctx.args),) + (None,) * len(ctx.args)


def _save_avg_backward(ctx, inputs, output) -> None:
    ctx.args = inputs[2:]


def _avg_pool2d_backward_grad(ctx, grad: Tensor):
    # avg_pool2d_backward is linear in grad_output, and its adjoint is average pooling itself.
    d_grad_output = _ops.avg_pool2d(grad, *ctx.args) if ctx.needs_input_grad[0] else None
    return (d_grad_output, None) + (None,) * len(ctx.args)


register_autograd("hotkernels::max_pool2d", _max_pool2d_grad, setup_context=_save_input_and_args)
register_autograd(
    "hotkernels::max_pool2d_with_indices", _max_pool2d_with_indices_grad, setup_context=_save_max_with_indices
)
register_autograd(
    "hotkernels::max_pool2d_backward", _max_pool2d_backward_grad, setup_context=_save_max_backward
)
register_autograd(
    "hotkernels::max_pool2d_with_offsets", _max_pool2d_with_offsets_grad, setup_context=_save_max_with_indices
)
register_autograd(
    "hotkernels::max_pool2d_offsets_backward", _max_pool2d_offsets_backward_grad,
    setup_context=_save_offsets_backward
)
register_autograd("hotkernels::avg_pool2d", _avg_pool2d_grad, setup_context=_save_input_and_args)
register_autograd(
    "hotkernels::avg_pool2d_backward", _avg_pool2d_backward_grad, setup_context=_save_avg_backward
)


# --- functional API -------------------------------------------------------------------------------------


def max_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""2-D max pooling over a (N, C, H, W) or (C, H, W) input, like :func:`torch.nn.functional.max_pool2d`.

    .. math:: y_{n c o_h o_w} = \max_{i < k_H,\ j < k_W} x_{n,\ c,\ o_h s_H - p_H + i d_H,\ o_w s_W - p_W + j d_W}

    Args:
        input: float32, float64, float16 or bfloat16; NCHW or channels_last (the output keeps it).
        kernel_size: window size, an int or a pair (kH, kW).
        stride: window step; default ``kernel_size``.
        padding: implicit -inf padding on both sides, at most half the kernel size.
        dilation: spacing of the window's taps.
        ceil_mode: round the output size up (the last window must start inside the input or its left
            padding).
        return_indices: also return the flat ``h * W + w`` index of every maximum in its input plane
            (torch's indices, for :func:`torch.nn.functional.max_unpool2d`).

    NaN propagates: a window holding a NaN yields NaN (and the index of its last NaN); otherwise ties
    go to the first maximum in row-major order, as in torch.

    When autograd needs the argmax and ``return_indices`` is False, each output saves it as a uint8
    offset :math:`k_h k_W + k_w` within its window (windows of at most :data:`MAX_OFFSET_TAPS` taps;
    larger ones save torch's int64 indices), and backward sums
    :math:`\partial x_{n c h w} = \sum \partial y_{n c o_h o_w}` over the windows covering
    :math:`(h, w)` whose maximum is there, writing each input gradient once.
    """
    no_forward_ad("hotkernels.max_pool2d", input)
    g = pool2d_geometry("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    args = (g.kernel_size, g.stride, g.padding, g.dilation, ceil_mode)
    if return_indices or (torch.is_grad_enabled() and input.requires_grad and not _uses_offsets(g.kernel_size)):
        out, indices = _ops.max_pool2d_with_indices(input, *args)
        return (out, indices) if return_indices else out
    if torch.is_grad_enabled() and input.requires_grad:
        return _ops.max_pool2d_with_offsets(input, *args)[0]
    return _ops.max_pool2d(input, *args)


def avg_pool2d(
    input: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    r"""2-D average pooling over a (N, C, H, W) or (C, H, W) input, like
    :func:`torch.nn.functional.avg_pool2d`.

    .. math:: y_{n c o_h o_w} = \frac{1}{D} \sum_{i < k_H,\ j < k_W} x_{n,\ c,\ o_h s_H - p_H + i,\ o_w s_W - p_W + j}

    Padded taps count as zeros. :math:`D` is ``divisor_override`` when given, else the number of taps
    inside the padded input (``count_include_pad=True``) or inside the input. float16/bfloat16 sum
    in float32.

    Args:
        input: float32, float64, float16 or bfloat16; NCHW or channels_last (the output keeps it).
        kernel_size, stride, padding, ceil_mode: as in :func:`max_pool2d` (no dilation).
        count_include_pad: count padded taps in the divisor.
        divisor_override: a fixed non-zero divisor.
    """
    no_forward_ad("hotkernels.avg_pool2d", input)
    g = pool2d_geometry("avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode)
    _check_divisor("avg_pool2d", divisor_override)
    return _ops.avg_pool2d(input, g.kernel_size, g.stride, g.padding, ceil_mode, count_include_pad, divisor_override)
