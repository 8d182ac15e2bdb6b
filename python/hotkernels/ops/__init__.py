"""Fake (meta) kernels and autograd for the ``torch.ops.hotkernels`` ops, one module per op family.

Each module registers, for the ops of its family (schemas in csrc/schemas.cpp): a fake kernel with
``torch.library.register_fake`` (the in-place ops share one, below) and a backward with
``torch.library.register_autograd`` (through ``_args.register_autograd``) whose gradients are
themselves ops, and it holds the family's functional entry point.
"""

import torch

from . import conv2d, gemm, linear, lstm, mish, optim, pool


def _returns_nothing(*args, **kwargs) -> None:
    return None


def _register_in_place_fakes() -> None:
    """The ops that return nothing (the in-place ops, which write their arguments) have nothing for
    a fake kernel to make: one serves them all, each found from its schema (as
    csrc/no_derivative.cpp finds them for their Autograd kernels)."""
    for schema in torch._C._jit_get_all_schemas():
        if schema.name.startswith("hotkernels::") and not schema.returns:
            torch.library.register_fake(schema.name, _returns_nothing)


_register_in_place_fakes()

__all__ = ["conv2d", "gemm", "linear", "lstm", "mish", "optim", "pool"]
