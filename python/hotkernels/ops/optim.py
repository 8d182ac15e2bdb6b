r"""The optimizer ops (schemas in csrc/schemas.cpp, formulas in csrc/math/optim.h). The optimizers
themselves are in :mod:`hotkernels.optim`.

Every step op updates one param group in place from lists of tensors (one per param) and returns
nothing; it increments the group's ``state_steps`` and derives the per-step scalars (bias
corrections, RAdam's rectification) from them on the host. ``grad_scale``/``found_inf`` are
torch.amp.GradScaler's (the gradient read as g/grad_scale, the step skipped when found_inf is
nonzero), ``grad_sq_norm``/``max_grad_norm`` clip_grad_norm_'s clipping inside the step, ``param_copies``
the half params whose float32 master weights ``params`` then are (written with the rounded result),
``rounding_seed`` stochastic rounding of the bfloat16 param writes. No autograd: optimizer steps
run under ``torch.no_grad``. The step ops' fake kernels make nothing (one serves them all:
:mod:`hotkernels.ops`); that of the one op with an output, the gradient norms, is here.
"""

import torch
from torch import Tensor


@torch.library.register_fake("hotkernels::multi_tensor_sq_norms")
def _multi_tensor_sq_norms_fake(tensors: list[Tensor]) -> Tensor:
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return tensors[0].new_empty((len(tensors),), dtype=dtype)
