r"""LAMB (You et al. 2020, NVLAMB variant as apex FusedLAMB and timm Lamb) and Ralamb (RAdam with
LAMB's layer-wise trust ratio), fused: per param group a moments pass (which also reduces ‖p‖² and
‖u‖² per tensor, of float64 params without underflow or overflow), then one update pass; LAMB's
global gradient norm is one more reduction pass over all gradients of the optimizer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from . import _base

_ops = torch.ops.hotkernels


class _TrustRatioOptimizer(_base.FusedOptimizer):
    """The two-pass step shared by Lamb and Ralamb."""

    _INIT = {"step": lambda p: _base.new_step(), "exp_avg": _base.zeros_like, "exp_avg_sq": _base.zeros_like}
    _rectify = False
    _clip_eps = 1e-6  # clip_grad_norm_'s; LAMB's NVLAMB clipping has none

    def _group_flags(self, group: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _step_group(self, w: _base.GroupStep, grad_inputs: dict[str, Any]) -> None:
        group, f = w.group, self._group_flags(w.group)
        exp_avgs, exp_avg_sqs = w.states["exp_avg"], w.states["exp_avg_sq"]
        beta1, beta2 = group["betas"]
        shared = (beta1, beta2, group["eps"], group["weight_decay"], f["grad_averaging"], f["bias_correction"],
                  self._rectify)
        # per param ‖θ‖² and ‖u‖², each as three partial sums (small values' squares scaled up, the
        # middle ones', big ones' scaled down: csrc/math/optim.h, SqSums): of a DTensor param, summed
        # over its shards between the two passes
        norms = torch.empty((len(w.params), 2, 3), dtype=torch.float64, device=w.kernel_params[0].device)
        _ops.lamb_moments_(w.kernel_params, w.grads, exp_avgs, exp_avg_sqs, w.steps, w.param_copies, norms,
                           grad_inputs["grad_sq_norm"], grad_inputs["max_grad_norm"], *shared, self._clip_eps,
                           grad_scale=grad_inputs["grad_scale"], found_inf=grad_inputs["found_inf"])
        _base.global_sq_norms(norms, w.params)
        _ops.lamb_apply_(w.kernel_params, exp_avgs, exp_avg_sqs, w.steps, w.param_copies, norms,
                         _base.as_float(group["lr"]), *shared, f["adapt"], f["trust_clip"],
                         found_inf=grad_inputs["found_inf"], rounding_seed=w.rounding_seed)


class Lamb(_TrustRatioOptimizer):
    r"""LAMB with NVLAMB semantics (apex ``FusedLAMB``, timm ``Lamb``), fused.

    With :math:`c = \max(1, \lVert g_{\text{all}} \rVert / \text{max\_grad\_norm})` the global
    gradient-norm clipping divisor over every param of the optimizer (off when
    ``max_grad_norm`` is None; NVLAMB's, without clip_grad_norm_'s :math:`10^{-6}`; the norm is
    :attr:`grad_norm`), and per param at its step :math:`t` (:math:`g` unscaled with a GradScaler,
    as in :class:`~hotkernels.optim.Adam`):

    .. math::
        g &\leftarrow g / c \\
        m &\leftarrow \beta_1 m + \beta_3 g \quad (\beta_3 = 1 - \beta_1 \text{ with grad\_averaging, else } 1), \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        u &= \frac{m / (1 - \beta_1^t)}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon} + \lambda\theta
            \quad\text{(no bias correction without bias\_correction)} \\
        \tau &= \lVert\theta\rVert / \lVert u\rVert \quad (1 \text{ where either norm is } 0;
            \min(\tau, 1) \text{ with trust\_clip}) \\
        \theta &\leftarrow \theta - \gamma\,\tau\,u

    :math:`\tau` is applied when :math:`\lambda \ne 0` or ``always_adapt``, else :math:`\tau = 1`.

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\gamma`.
        bias_correction: divide the moments by :math:`1 - \beta^t`.
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda` (decoupled: part of the update direction).
        grad_averaging: :math:`\beta_3 = 1 - \beta_1` (else 1).
        max_grad_norm: global gradient-norm clipping threshold (None: off).
        trust_clip: clip the trust ratio to at most 1.
        always_adapt: apply the trust ratio even without weight decay.
        master_weights: keep float32 master copies of float16/bfloat16 params and state (see
            :class:`~hotkernels.optim.Adam`; on the CPU only so far).
        stochastic_rounding: round the bfloat16 param writes stochastically (on the CPU only so far).
    """

    _name = "Lamb"
    _clip_eps = 0.0

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        bias_correction: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        grad_averaging: bool = True,
        max_grad_norm: float | None = 1.0,
        trust_clip: bool = False,
        always_adapt: bool = False,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, bias_correction=bias_correction, betas=betas, eps=eps,
                                      weight_decay=weight_decay, grad_averaging=grad_averaging,
                                      max_grad_norm=max_grad_norm, trust_clip=trust_clip, always_adapt=always_adapt,
                                      master_weights=master_weights, stochastic_rounding=stochastic_rounding))

    def _group_flags(self, group: dict[str, Any]) -> dict[str, Any]:
        # max_grad_norm is global over the optimizer (as apex and timm): the optimizer-wide one decides
        return dict(grad_averaging=group["grad_averaging"], bias_correction=group["bias_correction"],
                    adapt=group["weight_decay"] != 0 or group["always_adapt"], trust_clip=group["trust_clip"])


class Ralamb(_TrustRatioOptimizer):
    r"""Ralamb: the RAdam step scaled by LAMB's trust ratio of that step, fused.

    Per param at step :math:`t`, with RAdam's :math:`\rho_t` and :math:`r_t` (:class:`RAdam`):

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1) g, \qquad v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        u &= \frac{m}{1 - \beta_1^t} \cdot \begin{cases} r_t \dfrac{\sqrt{1 - \beta_2^t}}{\sqrt v + \epsilon}
            & \rho_t > 5 \\ 1 & \text{otherwise} \end{cases} \; + \lambda\theta \\
        \theta &\leftarrow \theta - \gamma\,\frac{\lVert\theta\rVert}{\lVert u\rVert}\,u
            \quad (\text{ratio } 1 \text{ where either norm is } 0)

    The trust ratio is that of the step :math:`u` itself (not of :math:`\theta - u`, a known slip in
    some implementations); weight decay is decoupled, inside :math:`u` as in LAMB. GradScaler and
    ``max_grad_norm`` (``clip_grad_norm_``'s clipping) as :class:`~hotkernels.optim.Adam`.

    Args:
        params: iterable of parameters or of dicts defining parameter groups.
        lr: learning rate :math:`\gamma`.
        betas: :math:`(\beta_1, \beta_2)`.
        eps: :math:`\epsilon`.
        weight_decay: :math:`\lambda`.
        max_grad_norm: clip the gradients of all groups to this total norm (None: off).
        master_weights: keep float32 master copies of float16/bfloat16 params and state (see
            :class:`~hotkernels.optim.Adam`; on the CPU only so far).
        stochastic_rounding: round the bfloat16 param writes stochastically (on the CPU only so far).
    """

    _name = "Ralamb"
    _rectify = True

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      max_grad_norm=max_grad_norm, master_weights=master_weights,
                                      stochastic_rounding=stochastic_rounding))

    def _group_flags(self, group: dict[str, Any]) -> dict[str, Any]:
        return dict(grad_averaging=True, bias_correction=True, adapt=True, trust_clip=False)
