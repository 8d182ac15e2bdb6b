"""Drop-in replacements for :mod:`torch.nn` modules, backed by hotkernels ops."""

from .conv2d import Conv2d
from .linear import Linear
from .lstm import LSTM, LSTMCell
from .mish import Mish
from .pool import AvgPool2d, MaxPool2d

__all__ = ["AvgPool2d", "Conv2d", "LSTM", "LSTMCell", "Linear", "MaxPool2d", "Mish"]
