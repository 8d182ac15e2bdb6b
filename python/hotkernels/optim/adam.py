r"""Adam and AdamW with one fused kernel call per param group and step.

Drop-in for :class:`torch.optim.Adam` and :class:`torch.optim.AdamW`: the same constructor,
``param_groups`` keys and state (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``), so a
``state_dict`` saved by either loads into the other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from . import _base

_ops = torch.ops.hotkernels


class Adam(_base.CapturableOptimizer):
    r"""Adam (Kingma & Ba 2015), as :class:`torch.optim.Adam`, fused.

    For each param, with :math:`g` the gradient (negated when ``maximize``) and step :math:`t`:

    .. math::
        g &\leftarrow g + \lambda\theta \quad\text{(L2; or } \theta \leftarrow \theta(1 - \gamma\lambda)
              \text{ with decoupled\_weight\_decay)} \\
        m &\leftarrow m + (1 - \beta_1)(g - m), \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ (amsgrad; else } \hat v = v) \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t} \cdot
              \frac{m}{\sqrt{\hat v}/\sqrt{1 - \beta_2^t} + \epsilon}

    All params of a group run in one call of ``hotkernels::adam_step_`` (one parallel region on the
    CPU, a multi-tensor apply of a few launches on CUDA), which also increments the ``step`` counters.
    Params may be float32, float64, float16 or bfloat16 (the half types compute in float32, with
    their state in the param's dtype, as torch's fused Adam keeps it).

    With a ``torch.amp.GradScaler``, :math:`g` is the unscaled gradient, read from the scaled one in
    the step's own pass, and a step with an inf/NaN gradient is skipped entirely; ``max_grad_norm``
    clips :math:`g` as ``clip_grad_norm_`` over all param groups first (see
    :class:`~hotkernels.optim._base.FusedOptimizer`; the norm is :attr:`grad_norm`).

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\gamma` (a float, or a 1-element tensor read once per step).
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`, added to the denominator.
        weight_decay: :math:`\lambda`.
        amsgrad: use the maximum of past second moments (AMSGrad).
        maximize: maximize the objective instead of minimizing.
        decoupled_weight_decay: decay the weights directly (AdamW) instead of adding L2 to the gradient.
        capturable: keep the step counters on the params' device (float32, as torch.optim's
            capturable); on CUDA the kernels then derive the bias corrections from them on the
            device, so the step never syncs with the host and can be captured in a CUDA graph (with a
            float lr: a tensor lr is read on the host). Also with a GradScaler: its ``found_inf`` is then
            read on the device (without capturable, on the host: one sync per step; its
            ``grad_scale`` and the clipping norm are read on the device either way).
        max_grad_norm: clip the gradients of all groups to this total norm (None: off).
        master_weights: keep a float32 copy of each float16/bfloat16 param, and float32 state, and
            step that, writing the rounded result into the param (see
            :class:`~hotkernels.optim._base.FusedOptimizer`).
        stochastic_rounding: round the bfloat16 param writes stochastically.
    """

    _name = "Adam"
    _sparse_hint = ", please consider SparseAdam instead"
    _INIT = {
        "step": lambda p: _base.new_step(),
        "exp_avg": _base.zeros_like,
        "exp_avg_sq": _base.zeros_like,
        "max_exp_avg_sq": _base.zeros_like,
    }
    _GROUP_DEFAULTS = dict(_base.CapturableOptimizer._GROUP_DEFAULTS, amsgrad=False)

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
        capturable: bool = False,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay,
                                      capturable=capturable, max_grad_norm=max_grad_norm,
                                      master_weights=master_weights, stochastic_rounding=stochastic_rounding))

    def _step_group(self, w: _base.GroupStep, grad_inputs: dict[str, Any]) -> None:
        group, state = w.group, w.states
        beta1, beta2 = group["betas"]
        _ops.adam_step_(
            w.kernel_params, w.grads, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq", []),
            w.steps, w.param_copies, _base.as_float(group["lr"]), _base.as_float(beta1), _base.as_float(beta2),
            group["eps"], group["weight_decay"], group["amsgrad"], group["maximize"], group["decoupled_weight_decay"],
            **grad_inputs, rounding_seed=w.rounding_seed,
        )  # fmt: skip


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter 2019), as :class:`torch.optim.AdamW`: :class:`Adam` with
    decoupled weight decay :math:`\theta \leftarrow \theta(1 - \gamma\lambda)` (default
    :math:`\lambda = 10^{-2}`), fused."""

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        capturable: bool = False,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True,
                         capturable=capturable, max_grad_norm=max_grad_norm, master_weights=master_weights,
                         stochastic_rounding=stochastic_rounding)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
