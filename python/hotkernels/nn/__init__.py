"""Drop-in replacements for :mod:`torch.nn` modules, backed by hotkernels ops."""

from .conv2d import Conv2d
from .mish import Mish

__all__ = ["Conv2d", "Mish"]
