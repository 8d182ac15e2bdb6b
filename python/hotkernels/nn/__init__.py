"""Drop-in replacements for :mod:`torch.nn` modules, backed by hotkernels ops."""

from .mish import Mish

__all__ = ["Mish"]
