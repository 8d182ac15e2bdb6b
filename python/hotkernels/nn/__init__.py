"""Drop-in replacements for :mod:`torch.nn` modules, backed by hotkernels ops."""

from .lstm import LSTM, LSTMCell
from .mish import Mish
from .pool import AvgPool2d, MaxPool2d

__all__ = ["AvgPool2d", "LSTM", "LSTMCell", "MaxPool2d", "Mish"]
