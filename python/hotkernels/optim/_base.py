"""Shared pieces of the fused optimizers: torch.optim's argument checks (same wording), the
collection of a param group's tensors and lazy state, and the scalar conversions."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer


class FusedOptimizer(Optimizer):
    """torch.optim.Optimizer whose step runs the closure, then `_update()`: the fused kernels."""

    def _update(self) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs a single optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._update()
        return loss


def check_lr(lr: float | Tensor) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_hyper(lr: float | Tensor, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    """torch.optim.Adam's checks and messages (also RAdam's, and this package's other optimizers')."""
    check_lr(lr)
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def as_float(x: float | Tensor) -> float:
    """A hyperparameter as a Python float (a tensor lr is read once per group and step)."""
    return float(x.item()) if isinstance(x, Tensor) else float(x)


def new_step() -> Tensor:
    """A step counter as torch.optim keeps it: a 0-dim float tensor on the CPU."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


def new_device_step(p: Tensor) -> Tensor:
    """A capturable step counter (torch.optim's capturable=True): float32 on the param's device."""
    return torch.zeros((), dtype=torch.float32, device=p.device)


def zeros_like(p: Tensor) -> Tensor:
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def params_with_grad(group: dict[str, Any], name: str, sparse_hint: str = "") -> tuple[list[Tensor], list[Tensor]]:
    """The params of a group that have a gradient, and those gradients (never written to)."""
    params, grads = [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError(f"{name} does not support sparse gradients{sparse_hint}")
        params.append(p)
        grads.append(p.grad)
    return params, grads


def state_lists(state: Any, params: list[Tensor], init: dict[str, Any], keys: list[str]) -> list[list[Tensor]]:
    """For each key, the list of that state entry over params; missing entries are created from
    ``init[key](p)`` (lazy state initialisation, also for entries a loaded state lacks)."""
    out: list[list[Tensor]] = [[] for _ in keys]
    for p in params:
        s = state[p]
        for lst, key in zip(out, keys):
            if key not in s:
                s[key] = init[key](p)
            lst.append(s[key])
    return out
