"""Swap torch.nn modules inside a model for their hotkernels drop-ins, and back."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field

from torch import nn


def _pairs() -> list[tuple[type[nn.Module], type[nn.Module]]]:
    """(torch class, hotkernels class) for every module hotkernels replaces. Each hotkernels class
    keeps the torch class's attributes, parameters and buffers, so a swap is a change of class and
    weights, device, dtype, hooks and train/eval mode all stay; its ``unsupported(module)`` says
    why a torch module cannot be swapped, or ``None``."""
    from . import nn as hk

    # every hotkernels.nn module is the drop-in for the torch.nn module of its name
    return [(getattr(nn, name), getattr(hk, name)) for name in hk.__all__]


@dataclass
class Conversion:
    """What :func:`convert` did, kept as ``model.hotkernels_conversion`` on the model it returns:
    each swapped submodule's name with its old and new class, each submodule left as torch's
    (hotkernels cannot run it) with the reason. ``str()`` gives the summary that
    ``convert(..., verbose=True)`` prints."""

    swapped: dict[str, tuple[str, str]] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.swapped and not self.kept:
            return "hotkernels.convert: nothing to swap"
        counts = Counter(self.swapped.values())
        lines = [f"hotkernels.convert: swapped {len(self.swapped)} modules"]
        lines += [f"  {n:>4} x {old} -> {new}" for (old, new), n in sorted(counts.items())]
        if self.kept:
            lines.append(f"  kept {len(self.kept)} as torch's, which hotkernels cannot run:")
            lines += [f"    {name}: {reason}" for name, reason in self.kept.items()]
        return "\n".join(lines)


def convert(model: nn.Module, inplace: bool = True, reverse: bool = False, verbose: bool = False) -> nn.Module:
    """Replace the torch.nn modules inside ``model`` (the model itself included) that
    :mod:`hotkernels.nn` has a drop-in for (Conv2d, Linear, MaxPool2d, AvgPool2d, LSTMCell, LSTM
    and Mish) with those drop-ins, or, with ``reverse=True``, the hotkernels ones with torch's, and
    return the model (as ``torch.ao.quantization.convert`` and ``torch.compile`` do):
    ``model = hotkernels.convert(model)``.

    Only exact classes are swapped (a user's subclass of nn.Conv2d is left alone, since its forward
    may differ), and only modules the drop-in runs as torch does: one with parameters of a dtype or
    on a device that hotkernels cannot run (complex Conv2d weights, CUDA weights under a build
    without the CUDA kernels, a Linear on CUDA, ...) stays torch's and is listed in the summary with
    the reason.
    Weights, device, dtype, hooks and train/eval mode are kept: a swap changes the module's class,
    nothing else. Going back (``reverse=True``) swaps every hotkernels module.

    Args:
        model: any module.
        inplace: change ``model`` itself; otherwise convert and return a deep copy.
        reverse: go from hotkernels back to torch.
        verbose: print the summary: how many modules of each class were swapped, and which were
            kept as torch's and why.

    Returns:
        ``model`` (or its converted copy), with what was done as a :class:`Conversion` in its
        ``hotkernels_conversion`` attribute (replaced by each call).
    """
    if not inplace:
        model = copy.deepcopy(model)
    mapping = {(hk if reverse else pt): (pt if reverse else hk) for pt, hk in _pairs()}
    result = Conversion()
    for name, module in model.named_modules():
        target = mapping.get(type(module))
        if target is None:
            continue
        name = name or "(model)"
        reason = None if reverse else target.unsupported(module)
        if reason is not None:
            result.kept[name] = reason
            continue
        result.swapped[name] = (_qualname(type(module)), _qualname(target))
        module.__class__ = target
    model.hotkernels_conversion = result
    if verbose:
        print(result)
    return model


def _qualname(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.nn.{cls.__name__}"
