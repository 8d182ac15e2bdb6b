"""What the hotkernels ops run, for the drop-in modules' ``unsupported`` rules, which
:func:`hotkernels.convert` asks before it swaps a torch module for a drop-in."""

from __future__ import annotations

import torch
from torch import nn

from .. import _library

# The device types with kernels: the CPU, CUDA when compiled in, and meta (the fake kernels, which
# compute shapes only).
DEVICE_TYPES = ("cpu", "meta", "cuda") if _library.with_cuda else ("cpu", "meta")
_FLOAT_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def unsupported_parameters(module: nn.Module) -> str | None:
    """Why the ops cannot take ``module``'s parameters as they are now (their device, or their
    dtype: float32, float64, float16 or bfloat16), or ``None`` when they can. A module with none
    (pooling, Mish) only shows its input's dtype and device at the call, so this cannot decide for
    it."""
    for name, param in module.named_parameters():
        device = param.device.type
        if device not in DEVICE_TYPES:
            built = " (hotkernels was built without its CUDA kernels)" if device == "cuda" else ""
            return f"'{name}' is on {device}, where hotkernels has no kernels{built}"
        if param.dtype not in _FLOAT_TYPES:
            return f"'{name}' is {param.dtype} on {device}, which hotkernels does not compute"
    return None
