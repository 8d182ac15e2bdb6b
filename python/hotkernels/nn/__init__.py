"""Drop-in replacements for :mod:`torch.nn` modules, backed by hotkernels ops."""

from .lstm import LSTM, LSTMCell
from .mish import Mish

__all__ = ["LSTM", "LSTMCell", "Mish"]
