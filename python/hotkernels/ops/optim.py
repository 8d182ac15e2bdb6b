r"""Fake (meta) kernels for the optimizer ops (schemas in csrc/schemas.cpp, formulas in
csrc/math/optim.h). The optimizers themselves are in :mod:`hotkernels.optim`.

Every step op updates one param group in place from lists of tensors (one per param) and returns
nothing; it increments the group's ``state_steps`` and derives the per-step scalars (bias
corrections, RAdam's rectification) from them on the host. ``grad_scale``/``found_inf`` are
torch.amp.GradScaler's (the gradient read as g/grad_scale, the step skipped when found_inf is
nonzero), ``grad_sq_norm``/``max_grad_norm`` clip_grad_norm_'s clipping inside the step, ``param_copies``
the half params whose float32 master weights ``params`` then are (written with the rounded result),
``rounding_seed`` stochastic rounding of the bfloat16 param writes. No
autograd: optimizer steps run under ``torch.no_grad``.
"""

import torch
from torch import Tensor


@torch.library.register_fake("hotkernels::adam_step_")
def _adam_step_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, param_copies, lr, beta1,
                    beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, grad_scale=None,
                    found_inf=None, grad_sq_norm=None, max_grad_norm=0.0, rounding_seed=None) -> None:
    return None


@torch.library.register_fake("hotkernels::radam_step_")
def _radam_step_fake(params, grads, exp_avgs, exp_avg_sqs, state_steps, param_copies, lr, beta1, beta2, eps,
                     weight_decay, decoupled_weight_decay, maximize, grad_scale=None, found_inf=None, grad_sq_norm=None,
                     max_grad_norm=0.0, rounding_seed=None) -> None:
    return None


@torch.library.register_fake("hotkernels::multi_tensor_sq_norms")
def _multi_tensor_sq_norms_fake(tensors: list[Tensor]) -> Tensor:
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return tensors[0].new_empty((len(tensors),), dtype=dtype)


@torch.library.register_fake("hotkernels::lamb_moments_")
def _lamb_moments_fake(params, grads, exp_avgs, exp_avg_sqs, state_steps, param_copies, norms, grad_sq_norm,
                       max_grad_norm, beta1, beta2, eps, weight_decay, grad_averaging, bias_correction, rectify,
                       clip_eps=0.0, grad_scale=None, found_inf=None) -> None:
    return None


@torch.library.register_fake("hotkernels::lamb_apply_")
def _lamb_apply_fake(params, exp_avgs, exp_avg_sqs, state_steps, param_copies, norms, lr, beta1, beta2, eps,
                     weight_decay, grad_averaging, bias_correction, rectify, adapt, trust_clip, found_inf=None,
                     rounding_seed=None) -> None:
    return None


@torch.library.register_fake("hotkernels::novograd_step_")
def _novograd_step_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, param_copies,
                        grad_sq_norms, lr, beta1, beta2, eps, weight_decay, grad_averaging, amsgrad, grad_scale=None,
                        found_inf=None, grad_sq_norm=None, max_grad_norm=0.0, rounding_seed=None) -> None:
    return None


@torch.library.register_fake("hotkernels::lookahead_sync_")
def _lookahead_sync_fake(fast, slow, param_copies, alpha, rounding_seed=None) -> None:
    return None
