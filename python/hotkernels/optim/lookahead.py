r"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") over any
optimizer, and the over9000 combinations Ranger (Lookahead over RAdam) and RangerLars (Lookahead
over Ralamb)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from . import _base
from .lamb import Ralamb
from .radam import RAdam

_ops = torch.ops.hotkernels


class Lookahead(Optimizer):
    r"""Lookahead over ``optimizer`` (the fast weights are its params).

    Slow weights :math:`\phi` start as the initial params; after every ``k`` steps of the inner
    optimizer, :math:`\phi \leftarrow \phi + \alpha(\theta - \phi)` and :math:`\theta \leftarrow \phi`.
    The sync is one fused pass per param group (``hotkernels::lookahead_sync_``), separate from the
    inner step (it runs once in k steps).

    ``param_groups`` and ``state`` are the inner optimizer's, so LR schedulers and ``zero_grad`` act
    on it. ``state_dict()`` holds the inner optimizer's state dict, the slow weights by parameter
    position (over the groups, in order) and the step count, so it reloads into a fresh Lookahead
    over the same parameter layout.

    A ``torch.amp.GradScaler`` steps it as it steps the inner optimizer (its ``grad_scale`` and
    ``found_inf`` are passed on, when the inner optimizer takes them); a step skipped for an inf/NaN
    gradient does not count towards the k steps (``found_inf`` is read on the host for that).
    :attr:`grad_norm` is the inner optimizer's. With an inner optimizer's ``master_weights``, a half
    param's slow weights are float32 and the sync runs on its float32 master copy, then writes the
    rounded result into the param (``stochastic_rounding`` as the inner group's).

    Args:
        optimizer: the inner (fast) optimizer.
        k: inner steps between syncs.
        alpha: slow weights step size :math:`\alpha \in [0, 1]`.
    """

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not 1 <= k:
            raise ValueError(f"hotkernels.optim.Lookahead: Invalid lookahead steps: {k} (k must be at least 1)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"hotkernels.optim.Lookahead: Invalid slow update rate: {alpha} (alpha must be in [0, 1])")
        # Not Optimizer.__init__: the groups and state are the inner optimizer's (properties below:
        # its load_state_dict replaces its lists), not copies.
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.lookahead_step = 0
        self.slow = [p.detach().clone() for group in self.param_groups for p in group["params"]]
        for name in ("step_pre", "step_post", "state_dict_pre", "state_dict_post", "load_state_dict_pre",
                     "load_state_dict_post"):
            setattr(self, f"_optimizer_{name}_hooks", OrderedDict())
        self._patch_step_function()

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @property
    def _step_supports_amp_scaling(self) -> bool:
        return getattr(self.optimizer, "_step_supports_amp_scaling", False)

    @property
    def grad_norm(self) -> Tensor | None:
        """The inner optimizer's :attr:`~hotkernels.optim._base.FusedOptimizer.grad_norm`."""
        return getattr(self.optimizer, "grad_norm", None)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self.slow.extend(p.detach().clone() for p in self.param_groups[-1]["params"])

    @torch.no_grad()
    def sync(self) -> None:
        """slow ← slow + α(fast − slow), fast ← slow, for every param."""
        i = 0
        for k, group in enumerate(self.param_groups):
            fast = group["params"]
            if fast:
                if group.get("master_weights"):  # the masters (made here if not stepped yet), float32 slow weights
                    _base.state_lists(self.state, fast, {}, [], master=True)
                    for j, p in enumerate(fast, start=i):
                        if p.dtype in _base.HALF and self.slow[j].dtype != torch.float32:
                            self.slow[j] = self.slow[j].float()
                # DTensor params: each rank syncs its shard (the slow weights are DTensors like them)
                local_fast, _, (slow,) = _base.local_shards("Lookahead", fast, None, [self.slow[i : i + len(fast)]])
                copies, seed = _base.param_writes(group, local_fast)
                try:
                    _ops.lookahead_sync_(_base.kernel_params(self.state, local_fast, group), slow, copies, self.alpha,
                                         rounding_seed=seed)
                except RuntimeError as e:
                    raise _base.op_error(self, e, k, every_param=True)
            i += len(fast)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One inner step; every k-th also syncs the slow and fast weights.

        Args:
            closure: a closure that reevaluates the model and returns the loss.
        """
        amp = {name: getattr(self, name) for name in ("grad_scale", "found_inf") if hasattr(self, name)}
        for name, value in amp.items():  # set by GradScaler.step on this optimizer: the inner one reads them
            setattr(self.optimizer, name, value)
        try:
            loss = self.optimizer.step(closure)
        except RuntimeError as e:
            # Ranger and RangerLars: an argument error of the inner RAdam or Ralamb (_base.op_error)
            # under the name the caller used
            inner = f"hotkernels.optim.{type(self.optimizer).__name__}: "
            if type(self) is Lookahead or not str(e).startswith(inner):
                raise
            rest = str(e)[len(inner):]
            at = rest.rfind(" (in hotkernels.")
            if at >= 0:
                rest = f"{rest[:at]} (in its {type(self.optimizer).__name__}'s {rest[at + 5:]}"
            named = RuntimeError(f"hotkernels.optim.{type(self).__name__}: {rest}")
            raise named from e
        finally:
            for name in amp:
                delattr(self.optimizer, name)
        if amp.get("found_inf") is not None and bool(amp["found_inf"]):
            return loss  # the inner step was skipped: so is this one
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self.sync()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "slow": list(self.slow), "lookahead_step": self.lookahead_step,
                "k": self.k, "alpha": self.alpha}

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        slow = state_dict["slow"]
        if len(slow) != len(self.slow):
            raise ValueError(f"loaded state dict has {len(slow)} slow weights, but this Lookahead has {len(self.slow)} params")
        for mine, theirs in zip(self.slow, slow):
            if mine.shape != theirs.shape:
                raise ValueError(f"loaded slow weight of shape {tuple(theirs.shape)} for a param of shape {tuple(mine.shape)}")
        self.optimizer.load_state_dict(state_dict["optimizer"])
        for mine, theirs in zip(self.slow, slow):
            mine.copy_(theirs)
        self.lookahead_step = state_dict["lookahead_step"]
        self.k = state_dict["k"]
        self.alpha = state_dict["alpha"]

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"


class _LookaheadOver(Lookahead):
    """Lookahead over an optimizer of its own, `_inner`, made from the params and its options (the
    over9000 combinations: defaults lr=1e-3, betas=(0.95, 0.999), eps=1e-5, k=6, alpha=0.5)."""

    _inner: type[Optimizer]

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0,
        k: int = 6,
        alpha: float = 0.5,
        max_grad_norm: float | None = None,
        master_weights: bool = False,
        stochastic_rounding: bool = False,
    ) -> None:
        super().__init__(self._inner(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                     max_grad_norm=max_grad_norm, master_weights=master_weights,
                                     stochastic_rounding=stochastic_rounding), k=k, alpha=alpha)


class Ranger(_LookaheadOver):
    r"""Ranger: :class:`Lookahead` over :class:`RAdam` (defaults lr=1e-3, betas=(0.95, 0.999),
    eps=1e-5, k=6, alpha=0.5; ``max_grad_norm``, ``master_weights`` and ``stochastic_rounding`` the inner
    RAdam's)."""

    _inner = RAdam


class RangerLars(_LookaheadOver):
    r"""RangerLars: :class:`Lookahead` over :class:`Ralamb` (defaults lr=1e-3, betas=(0.95, 0.999),
    eps=1e-5, k=6, alpha=0.5; ``max_grad_norm``, ``master_weights`` and ``stochastic_rounding`` the inner
    Ralamb's)."""

    _inner = Ralamb
