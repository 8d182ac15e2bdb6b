"""Swap torch.nn modules inside a model for their hotkernels drop-ins, and back."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

from torch import nn


def _pairs() -> list[tuple[type[nn.Module], type[nn.Module]]]:
    """(torch class, hotkernels class) for every module hotkernels replaces. Each hotkernels class
    keeps the torch class's attributes, parameters and buffers, so a swap is a change of class and
    weights, device, dtype, hooks and train/eval mode all stay."""
    from . import nn as hk

    names = ["Conv2d", "MaxPool2d", "AvgPool2d", "LSTMCell", "LSTM", "Mish"]
    return [(getattr(nn, n), getattr(hk, n)) for n in names if hasattr(hk, n)]


@dataclass
class Conversion:
    """What :func:`convert` did: the model, and each swapped submodule's name with its old and new class."""

    model: nn.Module
    swapped: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.swapped:
            return "hotkernels.convert: nothing to swap"
        counts = Counter(self.swapped.values())
        lines = [f"hotkernels.convert: swapped {len(self.swapped)} modules"]
        lines += [f"  {n:>4} x {old} -> {new}" for (old, new), n in sorted(counts.items())]
        return "\n".join(lines)


def convert(model: nn.Module, inplace: bool = True, reverse: bool = False) -> Conversion:
    """Replace the torch.nn Conv2d, MaxPool2d, AvgPool2d, LSTMCell, LSTM and Mish modules inside
    ``model`` (the model itself included) with their hotkernels drop-ins, or, with ``reverse=True``,
    the hotkernels ones with torch's.

    Only exact classes are swapped (a user's subclass of nn.Conv2d is left alone, since its forward
    may differ). Weights, device, dtype, hooks and train/eval mode are kept: a swap changes the
    module's class, nothing else.

    Args:
        model: any module.
        inplace: change ``model`` itself; otherwise convert a deep copy.
        reverse: go from hotkernels back to torch.

    Returns:
        A :class:`Conversion` with the (possibly copied) model and what was swapped; ``print`` it
        for a summary.
    """
    if not inplace:
        model = copy.deepcopy(model)
    mapping = {(hk if reverse else pt): (pt if reverse else hk) for pt, hk in _pairs()}
    result = Conversion(model)
    for name, module in model.named_modules():
        target = mapping.get(type(module))
        if target is not None:
            result.swapped[name or "(model)"] = (_qualname(type(module)), _qualname(target))
            module.__class__ = target
    return result


def _qualname(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.nn.{cls.__name__}"
