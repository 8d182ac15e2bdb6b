r"""Adam and AdamW with one fused kernel call per param group and step.

Drop-in for :class:`torch.optim.Adam` and :class:`torch.optim.AdamW`: the same constructor,
``param_groups`` keys and state (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``), so a
``state_dict`` saved by either loads into the other.
"""

from __future__ import annotations

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
    Params must be float32 or float64 on the CPU; on CUDA also float16 and bfloat16 (state in the
    param's dtype, math in float32).

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
            float lr: a tensor lr is read on the host).
    """

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
    ) -> None:
        _base.check_hyper(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay, capturable=capturable)
        super().__init__(params, defaults)

    def _update(self) -> None:
        for k, group in enumerate(self.param_groups):
            params, grads = _base.params_with_grad(group, "Adam", ", please consider SparseAdam instead")
            if not params:
                continue
            keys = ["step", "exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
            steps, *moments = _base.state_lists(self.state, params, self._init(group), keys)
            params, grads, moments = _base.local_shards("Adam", params, grads, moments)
            exp_avgs, exp_avg_sqs = moments[:2]
            max_exp_avg_sqs = moments[2] if group["amsgrad"] else []
            beta1, beta2 = group["betas"]
            try:
                _ops.adam_step_(
                    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                    _base.as_float(group["lr"]), _base.as_float(beta1), _base.as_float(beta2), group["eps"],
                    group["weight_decay"], group["amsgrad"], group["maximize"], group["decoupled_weight_decay"],
                )  # fmt: skip
            except RuntimeError as e:
                raise _base.op_error(self, e, k)


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
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True,
                         capturable=capturable)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
