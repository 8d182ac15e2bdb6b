r"""NovoGrad (Ginsburg et al. 2019, "Stochastic Gradient Methods with Layer-wise Adaptive Moments"),
fused; the semantics, defaults and state of ``torch_optimizer.NovoGrad``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from . import _base

_ops = torch.ops.hotkernels


def _layer_scalar(p: Tensor) -> Tensor:
    return torch.zeros((), dtype=p.dtype, device=p.device)


class NovoGrad(_base.FusedOptimizer):
    r"""NovoGrad: Adam's second moment kept per layer (one scalar per param tensor), fused.

    Per param, with :math:`\lVert g\rVert^2` the squared norm of its gradient:

    .. math::
        v &\leftarrow \lVert g\rVert^2 \text{ at the first step (} v = 0 \text{), else }
             \beta_2 v + (1 - \beta_2)\lVert g\rVert^2 \qquad
             (\hat v = \max(\hat v, v) \text{ with amsgrad, else } \hat v = v) \\
        g' &= \frac{g}{\sqrt{\hat v} + \epsilon} + \lambda\theta, \qquad
             g' \leftarrow (1 - \beta_1) g' \text{ with grad\_averaging} \\
        m &\leftarrow \beta_1 m + g', \qquad \theta \leftarrow \theta - \gamma m

    A step is two passes per group: ``hotkernels::multi_tensor_sq_norms`` over the gradients, then
    ``hotkernels::novograd_step_``. ``exp_avg_sq`` is a 0-dim tensor per param. GradScaler and
    ``max_grad_norm`` as :class:`~hotkernels.optim.Adam` (the clipping norm is the sum of the layer
    norms: no extra pass).

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\gamma`.
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`.
        grad_averaging: scale the normalized gradient by :math:`1 - \beta_1`.
        amsgrad: use the maximum of past layer second moments.
        max_grad_norm: clip the gradients of all groups to this total norm (None: off).
        master_weights: keep float32 master copies of float16/bfloat16 params and state (see
            :class:`~hotkernels.optim.Adam`; on the CPU only so far).
        stochastic_rounding: round the bfloat16 param writes stochastically (on the CPU only so far).
    """

    _name = "NovoGrad"
    _INIT = {
        "step": lambda p: _base.new_step(),
        "exp_avg": _base.zeros_like,
        "exp_avg_sq": _layer_scalar,
        "max_exp_avg_sq": _layer_scalar,
    }
    _PER_TENSOR = frozenset({"exp_avg_sq", "max_exp_avg_sq"})

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.95, 0),
        eps: float = 1e-8,
        weight_decay: float = 0,
        grad_averaging: bool = False,
        amsgrad: bool = False,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      grad_averaging=grad_averaging, amsgrad=amsgrad, max_grad_norm=max_grad_norm,
                                      master_weights=master_weights, stochastic_rounding=stochastic_rounding))

    def _gather(self, k: int, group: dict[str, Any]) -> _base.GroupStep | None:
        w = super()._gather(k, group)
        if w is not None:  # the layer norms (of DTensor params: summed over their shards)
            try:
                w.grad_sq_norms = _base.global_sq_norms(_ops.multi_tensor_sq_norms(w.grads), w.params)
            except RuntimeError as e:
                raise _base.op_error(self, e, k, lists_hold_grads=True)
        return w

    def _clip_sq_norm(self, work: list[_base.GroupStep]) -> Tensor | None:
        # the sum of the layer norms (of every group) the step needs anyway
        layer_sq_norms = torch.cat([w.grad_sq_norms for w in work]) if work and self.defaults["max_grad_norm"] else None
        return self._total_grad_sq_norm([], [g for w in work for g in w.grads], layer_sq_norms)

    def _step_group(self, w: _base.GroupStep, grad_inputs: dict[str, Any]) -> None:
        group, state = w.group, w.states
        beta1, beta2 = group["betas"]
        _ops.novograd_step_(
            w.kernel_params, w.grads, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq", []),
            w.steps, w.param_copies, w.grad_sq_norms, _base.as_float(group["lr"]), beta1, beta2, group["eps"],
            group["weight_decay"], group["grad_averaging"], group["amsgrad"], **grad_inputs,
            rounding_seed=w.rounding_seed,
        )  # fmt: skip
