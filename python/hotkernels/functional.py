"""Drop-in replacements for functions of :mod:`torch.nn.functional`, backed by hotkernels ops."""

from .ops.lstm import lstm, lstm_cell
from .ops.mish import mish

__all__ = ["lstm", "lstm_cell", "mish"]
