"""Autocast (``torch.autocast``, automatic mixed precision) for the hotkernels ops, as torch's
autocast treats the ops they replace.

Inside an autocast region torch runs each op of its "lower precision" list with its floating-point
tensor arguments cast to the region's dtype (``torch.get_autocast_dtype``: float16 or bfloat16),
leaving float64 and tensors on other devices alone, and runs every op in no list in the dtypes it
is given (``aten/src/ATen/autocast_mode.cpp``). The hotkernels ops follow the lists of the torch ops
they stand for, on each device:

- ``conv2d``: lower precision on the CPU and CUDA, as torch's ``conv2d``.
- ``lstm_layer``: lower precision on the CPU and CUDA, as torch's LSTM layers (``mkldnn_rnn_layer``
  on the CPU, ``_cudnn_rnn`` on CUDA). torch's CPU LSTM falls back from oneDNN for projections and
  packed batches to a path that runs only its GEMMs in the lower precision, returning ``h`` or ``c``
  in float32; ours stays in the autocast dtype there too, as torch's oneDNN and CUDA paths do.
- ``lstm_cell``: lower precision on CUDA, as torch's ``lstm_cell``. On the CPU torch's cell is in no
  list: its two gate GEMMs (``linear``) are, and the elementwise update mixes their result with
  ``cx``, so it returns ``promote(autocast dtype, cx.dtype)``. Ours computes in that dtype, from
  its operands as given (torch's rounds its GEMMs' operands and results to the autocast dtype).
- ``mish``, ``max_pool2d``, ``avg_pool2d`` and every backward op: no autocast kernel, as torch's
  ``mish``, pooling and backward ops are in no list. Autocast falls through for them: they compute
  in their input's dtype, the backward ops in the forward's (its saved tensors and gradients).

Casts are autograd ops, so gradients flow back to the float32 weights in their own dtype. Unlike
torch's C++ casts, these are not cached across calls within a region (torch keeps the cast of a
float32 leaf, a weight, for the region), so a weight used by several calls is cast at each.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

_lib = torch.library.Library("hotkernels", "FRAGMENT")

# The dtype an op's eligible arguments are cast to, from the region's dtype and the op's arguments.
DtypeRule = Callable[[torch.dtype, tuple[Any, ...]], torch.dtype]


def _region_dtype(autocast_dtype: torch.dtype, args: tuple[Any, ...]) -> torch.dtype:
    return autocast_dtype


def _eligible(value: Any, device_type: str) -> bool:
    """What torch's autocast casts (at::autocast::is_eligible): floating tensors on the region's
    device, float64 excepted."""
    return (isinstance(value, torch.Tensor) and value.is_floating_point() and value.device.type == device_type
            and value.dtype != torch.float64)


def register_autocast(name: str, device_type: str, rule: DtypeRule = _region_dtype) -> None:
    """Run ``hotkernels::<name>`` inside an autocast region on ``device_type`` with its eligible
    tensor arguments cast to ``rule(autocast dtype, args)`` and autocast off below it (its
    kernels, and anything they call, see the cast arguments only), as torch's autocast kernels do.

    ``torch.library.register_autocast`` casts to one dtype fixed when registering; torch's own
    ops cast to the dtype of the region they run in, read here at each call."""
    op = getattr(torch.ops.hotkernels, name).default
    key = "Autocast" + torch._C._dispatch_key_for_device(device_type)
    below = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

    def kernel(_keyset, *args):
        dtype = rule(torch.get_autocast_dtype(device_type), args)
        cast = tuple(a.to(dtype) if _eligible(a, device_type) else a for a in args)
        # Autocast off for the op's own dispatch by excluding its key, as torch's autocast kernels
        # (and torch.library.register_autocast) do; torch.autocast(enabled=False) would also reset
        # the region's dtype and, outside a context manager, clear torch's cast cache on exit.
        with torch._C._ExcludeDispatchKeyGuard(below):
            return op(*cast)

    _lib.impl(name, kernel, key, with_keyset=True)


def register_lower_precision(name: str, *device_types: str) -> None:
    """Put ``hotkernels::<name>`` in autocast's lower-precision list on ``device_types``: its
    floating arguments are cast to the region's dtype (float16 or bfloat16)."""
    for device_type in device_types:
        register_autocast(name, device_type)
