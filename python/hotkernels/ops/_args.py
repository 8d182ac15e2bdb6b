"""Argument checks shared by the ops' Python entry points: the 2-D ops' size arguments, and no
forward-mode AD; and the ops' autograd: how it treats outputs that take no gradient, and how each
op registers its formula."""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Sequence, Union

import torch
import torch.autograd.forward_ad as fwAD

IntPair = Union[int, Sequence[int]]
"""A size argument of a 2-D op (kernel_size, stride, padding, dilation): one int for both
dimensions, or a sequence of one or two ints, as torch's 2-D ops take them."""


def _int(value: Any, name: str, op: str) -> int | torch.SymInt:
    """``value`` as an int: any integer (Python's, numpy's, a 0-d integer tensor), never a bool or a
    float, which torch's 2-D ops reject too (a float was cut to an int before)."""
    if isinstance(value, torch.SymInt):
        return value
    if not isinstance(value, bool) and not (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"{op}: {name} must be ints, but got {value!r} of type {type(value).__name__}")


def pair(value: IntPair, name: str, op: str, usage: str = "must be a single int or a pair of ints") -> list[int]:
    """``value`` as two ints ([v, v] for a single one). A sequence of other than one or two raises
    what torch raises for it, a ``RuntimeError``: "`op`: `name` `usage`, but got ..."; an element
    that is not an integer a ``TypeError`` naming ``op`` and ``name``. Other integers (numpy's, 0-d
    integer tensors) become ints; SymInts pass through unchanged (under ``torch.compile``)."""
    if getattr(value, "ndim", None) == 0 or not hasattr(value, "__iter__"):  # a number, a 0-d tensor or array
        v = _int(value, name, op)
        return [v, v]
    values = [_int(v, name, op) for v in value]
    if len(values) == 1:
        return values * 2
    if len(values) != 2:
        raise RuntimeError(f"{op}: {name} {usage}, but got {values}")
    return values


def no_forward_ad(op: str, *tensors: Any) -> None:
    """Raises where a tensor among ``tensors`` carries a forward-mode tangent (inside
    ``torch.autograd.forward_ad.dual_level``, ``torch.func.jvp`` or ``jacfwd``). The ops have
    reverse-mode derivatives only, and torch passes no tangent through a custom op without one,
    silently: the result would come back with a missing or zero derivative. ``None`` entries and
    non-tensors are skipped; outside forward-mode AD this is one integer test."""
    if fwAD._current_level < 0:
        return
    for t in tensors:
        if isinstance(t, torch.Tensor) and fwAD.unpack_dual(t).tangent is not None:
            raise NotImplementedError(
                f"{op}: forward-mode AD (torch.func.jvp, jacfwd, torch.autograd.forward_ad) is not supported; "
                "hotkernels' ops differentiate in reverse mode (backward, torch.autograd.grad)"
            )


def non_differentiable(ctx: Any, *outputs: torch.Tensor) -> None:
    """Marks ``outputs`` of a custom op (integer indices, saved activations) as taking no gradient,
    and has autograd pass ``None`` to the op's backward for every output that got none, rather than
    a tensor of zeros: by default it materialises one for each such output on every backward, a
    fresh allocation and fill as large as the output. So the backward must take ``None`` for a
    differentiable output too (autograd's undefined-gradient check, run by gradcheck, passes
    ``None`` for every output). Measured on Zen 4 (2 threads, paired in one process), max_pool2d
    3×3/s2/p1 forward+backward of (32, 64, 112, 112): 1.59x faster with ``return_indices=True``
    (its int64 indices: 51 MB of zeros a backward), 1.02-1.04x with autograd's uint8 window offsets;
    on a Xeon, zero-filling the [T, B, 4H] gradient of an LSTM layer's gates had cost ~4% of its
    forward+backward."""
    ctx.mark_non_differentiable(*outputs)
    ctx.set_materialize_grads(False)


def register_autograd(op: str, backward: Callable, setup_context: Callable) -> None:
    """``torch.library.register_autograd(op, backward, setup_context=setup_context)``, with the ops
    that ``backward`` calls dispatched below autograd where grad mode is off (a backward without
    ``create_graph``): each op's autograd layer (torch.library's, in Python) would there only
    redispatch it, a few µs a call, a third of a small convolution's gradient ops. The saved tensors
    are unpacked before (``ctx.saved_tensors``, whose unpack hooks may run a forward that must be
    recorded: non-reentrant activation checkpointing). With grad mode on (``create_graph=True``) or
    under ``torch.compile`` (compiled autograd traces the formula, and not that guard), the formula
    runs as it is. Measured on Zen 4 (paired in one process, with conv2d's layout shortcut,
    ops/conv2d.py ``_suggests_channels_last``): a 1-channel 4×4 convolution's forward+backward
    1.12-1.16x faster, a small CNN's training step at batch 1 (two convolutions, Mish, max pooling)
    1.10-1.12x, which brought it level with torch's modules."""

    @functools.wraps(backward)
    def formula(ctx: Any, *grads: Any) -> Any:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return backward(ctx, *grads)
        unpacked = _Unpacked(ctx)
        with torch._C._AutoDispatchBelowAutograd():
            return backward(unpacked, *grads)

    torch.library.register_autograd(op, formula, setup_context=setup_context)


class _Unpacked:
    """An autograd ``ctx`` whose ``saved_tensors`` are already unpacked; other attributes are ctx's."""

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self.saved_tensors = ctx.saved_tensors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)
