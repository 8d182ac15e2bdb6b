r"""RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond"), fused;
drop-in for :class:`torch.optim.RAdam` (same constructor, groups and state keys)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from . import _base

_ops = torch.ops.hotkernels


class RAdam(_base.CapturableOptimizer):
    r"""RAdam, as :class:`torch.optim.RAdam`, fused.

    For each param at step :math:`t`, with :math:`g` the gradient (negated when ``maximize``):

    .. math::
        g &\leftarrow g + \lambda\theta \quad\text{(or } \theta \leftarrow \theta(1 - \gamma\lambda)
              \text{ with decoupled\_weight\_decay)} \\
        m &\leftarrow m + (1 - \beta_1)(g - m), \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1 - \beta_2^t} \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t}\, m \cdot
            \begin{cases} r_t \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt v + \epsilon} & \rho_t > 5 \\
                          1 & \text{otherwise} \end{cases}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}

    All params of a group run in one call of ``hotkernels::radam_step_`` (one parallel region on the
    CPU); the step scalars are computed per tensor from its step count. Dtypes, GradScaler and
    ``max_grad_norm`` as :class:`Adam`.

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\gamma` (a float or a 1-element tensor).
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`.
        decoupled_weight_decay: decay the weights directly (as AdamW) instead of L2 on the gradient.
        maximize: maximize the objective instead of minimizing.
        capturable: keep the step counters on the params' device (see :class:`Adam`).
        max_grad_norm: clip the gradients of all groups to this total norm (None: off).
        master_weights: keep float32 master copies of float16/bfloat16 params and state (see
            :class:`~hotkernels.optim.Adam`).
        stochastic_rounding: round the bfloat16 param writes stochastically.
    """

    _name = "RAdam"
    _INIT = {"step": lambda p: _base.new_step(), "exp_avg": _base.zeros_like, "exp_avg_sq": _base.zeros_like}

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
        capturable: bool = False,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay, capturable=capturable,
                                      max_grad_norm=max_grad_norm, master_weights=master_weights,
                                      stochastic_rounding=stochastic_rounding))

    def _step_group(self, w: _base.GroupStep, grad_inputs: dict[str, Any]) -> None:
        group = w.group
        beta1, beta2 = group["betas"]
        _ops.radam_step_(
            w.kernel_params, w.grads, w.states["exp_avg"], w.states["exp_avg_sq"], w.steps, w.param_copies,
            _base.as_float(group["lr"]), _base.as_float(beta1), _base.as_float(beta2), group["eps"],
            group["weight_decay"], group["decoupled_weight_decay"], group["maximize"], **grad_inputs,
            rounding_seed=w.rounding_seed,
        )  # fmt: skip
