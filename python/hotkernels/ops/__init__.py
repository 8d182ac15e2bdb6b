"""Fake (meta) kernels and autograd for the ``torch.ops.hotkernels`` ops, one module per op family.

Each module registers, for the ops of its family (schemas in csrc/schemas.cpp): a fake kernel with
``torch.library.register_fake`` and a backward with ``torch.library.register_autograd`` whose
gradients are themselves ops, and it holds the family's functional entry point.
"""

from . import conv2d, gemm, lstm, mish, optim, pool

__all__ = ["conv2d", "gemm", "lstm", "mish", "optim", "pool"]
