"""Argument expansion shared by the 2-D ops' Python entry points."""

from __future__ import annotations

from typing import Sequence, Union

import torch

IntPair = Union[int, Sequence[int]]
"""A size argument of a 2-D op (kernel_size, stride, padding, dilation): one int for both
dimensions, or a sequence of one or two ints, as torch's 2-D ops take them."""


def pair(value: IntPair, name: str, op: str, usage: str = "must be a single int or a pair of ints") -> list[int]:
    """``value`` as two ints ([v, v] for a single one). Anything else raises what torch raises for
    it, a ``RuntimeError``: "`op`: `name` `usage`, but got ...". Other integers (numpy's) become
    ints; SymInts pass through unchanged (under ``torch.compile``)."""
    if isinstance(value, (int, torch.SymInt)):
        return [value, value]
    values = [v if isinstance(v, torch.SymInt) else int(v) for v in value]
    if len(values) == 1:
        return values * 2
    if len(values) != 2:
        raise RuntimeError(f"{op}: {name} {usage}, but got {values}")
    return values
