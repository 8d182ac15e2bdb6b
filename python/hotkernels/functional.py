"""Drop-in replacements for functions of :mod:`torch.nn.functional`, backed by hotkernels ops."""

from .ops.conv2d import conv2d
from .ops.mish import mish

__all__ = ["conv2d", "mish"]
