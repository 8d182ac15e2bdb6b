"""Drop-in replacements for functions of :mod:`torch.nn.functional`, backed by hotkernels ops."""

from .ops.mish import mish

__all__ = ["mish"]
