"""Shared pieces of the fused optimizers: the step itself up to each optimizer's op call
(:class:`FusedOptimizer`), torch.optim's argument checks (same wording), the collection of a param
group's tensors and lazy state, DTensor params (their local shards and global norms), and the scalar
conversions."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer

_ops = torch.ops.hotkernels


@dataclass
class GroupStep:
    """One param group's part of a step: the lists its op call takes."""

    index: int  # the group's position in param_groups (for op_error)
    group: dict[str, Any]
    params: list[Tensor]  # the params that have a grad, as the model holds them (DTensors for global norms)
    kernel_params: list[Tensor]  # what the kernels update: their local shards, or those shards' master copies
    param_copies: list[Tensor]  # the step ops' param_copies (master_weights: the params the masters round into)
    rounding_seed: int | None  # the step ops' rounding_seed (stochastic_rounding)
    grads: list[Tensor]  # the local shards of the params' grads
    steps: list[Tensor]
    states: dict[str, list[Tensor]]  # by state key, the local shards (those per param tensor as they are)
    grad_sq_norms: Tensor | None = None  # ‖g‖² per param, where the optimizer takes them (NovoGrad)


class FusedOptimizer(Optimizer):
    r"""torch.optim.Optimizer whose step runs the closure, then the fused kernels: per param group,
    its params with a grad and their state (created lazily from :attr:`_INIT`) are gathered, then
    :meth:`_step_group` makes the group's op call.

    torch.amp.GradScaler: as for torch's fused Adam (``_step_supports_amp_scaling``), the scaler does
    not unscale the gradients in a pass of its own; it sets ``grad_scale`` and ``found_inf`` on the
    optimizer, and the kernels read the gradient as g / grad_scale and skip the whole step (params,
    state, step counters) when found_inf is nonzero.

    Gradient clipping (``max_grad_norm``): one norm over every gradient of the optimizer (all param
    groups, as ``clip_grad_norm_(model.parameters(), max_grad_norm)``), then the step scales each
    gradient by :math:`\min(1, \text{max\_grad\_norm} / (\lVert g\rVert + 10^{-6}))` as it reads
    it; with a GradScaler the norm is that of the unscaled gradients. :attr:`grad_norm` holds it.

    float16/bfloat16 params compute in float32 with their state in the param's dtype (as torch's
    fused Adam), or with ``master_weights`` (a group option) on a float32 copy of each half param
    (state ``master_param``) with float32 state, the param written with the rounded result after
    each step. ``stochastic_rounding`` rounds the bfloat16 param writes stochastically (up with the
    probability of the value's distance from the one below, so updates under half a unit of the last
    place still move the param on average; float16 writes round to nearest), from random bits seeded
    each step by torch's default CPU generator (deterministic under ``torch.manual_seed``; the same
    bits on the CPU and on CUDA). On CUDA so far Adam, AdamW, RAdam, Lookahead and Ranger take them
    (LAMB, Ralamb, RangerLars and NovoGrad refuse them there, by name).
    """

    _step_supports_amp_scaling = True

    _name: ClassVar[str]  # the name errors give the optimizer, as torch's do
    _sparse_hint: ClassVar[str] = ""  # what the sparse gradient error suggests instead
    # each state entry's initial value from its param: "step" first, then the order of the op's lists
    _INIT: ClassVar[dict[str, Callable[[Tensor], Tensor]]] = {}
    _PER_TENSOR: ClassVar[frozenset[str]] = frozenset()  # state entries of one scalar per param tensor

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        check_hyper(defaults["lr"], defaults["betas"], defaults["eps"], defaults["weight_decay"])
        check_max_grad_norm(defaults["max_grad_norm"])
        super().__init__(params, defaults)
        self._keep_grad_norm_state()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._keep_grad_norm_state()

    def _keep_grad_norm_state(self) -> None:
        # The last clipping step's squared norm and grad_scale, for grad_norm: a dict that the step
        # fills in place, since torch.compile (torch 2.11) cannot trace a step that sets a new
        # attribute on the optimizer.
        self.__dict__.setdefault("_grad_norm_parts", {})

    def _init(self, group: dict[str, Any]) -> dict[str, Callable[[Tensor], Tensor]]:
        return self._INIT

    def _state_keys(self, group: dict[str, Any]) -> list[str]:
        """The state entries a group's step takes: max_exp_avg_sq only with amsgrad."""
        return [key for key in self._INIT if key != "max_exp_avg_sq" or group.get("amsgrad")]

    def _gather(self, k: int, group: dict[str, Any]) -> GroupStep | None:
        """Param group `k`'s params with a grad, their grads and state (made where missing) as the
        kernels take them; None when no param has a grad."""
        params, grads = params_with_grad(group, self._name, self._sparse_hint)
        if not params:
            return None
        keys = self._state_keys(group)
        steps, *lists = state_lists(self.state, params, self._init(group), keys, group.get("master_weights", False))
        states = dict(zip(keys[1:], lists))
        # DTensor params: their local shards, with their grads' and state's (a scalar per param tensor
        # is no DTensor: the same on every rank)
        sharded = [key for key in states if key not in self._PER_TENSOR]
        local_params, grads, local = local_shards(self._name, params, grads, [states[key] for key in sharded])
        states.update(zip(sharded, local))
        return GroupStep(k, group, params, kernel_params(self.state, local_params, group),
                         *param_writes(group, local_params), grads, steps, states)

    def _clip_sq_norm(self, work: list[GroupStep]) -> Tensor | None:
        """The clipping norm's square (None: no clipping) over every group's gradients."""
        return self._total_grad_sq_norm([p for w in work for p in w.params], [g for w in work for g in w.grads])

    def _step_group(self, w: GroupStep, grad_inputs: dict[str, Any]) -> None:
        """The group's op call. `grad_inputs`: GradScaler's ``grad_scale`` and ``found_inf``, and the
        clipping's ``grad_sq_norm`` and ``max_grad_norm``, as the step ops take them."""
        raise NotImplementedError

    def _update(self) -> None:
        work = [w for k, group in enumerate(self.param_groups) if (w := self._gather(k, group)) is not None]
        grad_inputs = dict(self._grad_inputs(), **self._clip_inputs(self._clip_sq_norm(work)))
        for w in work:
            try:
                self._step_group(w, grad_inputs)
            except RuntimeError as e:
                raise op_error(self, e, w.index)

    @property
    def grad_norm(self) -> Tensor | None:
        """The total norm of the (unscaled) gradients at the last step, as ``clip_grad_norm_`` returns
        it: set by steps with ``max_grad_norm``, else None. Computed when read (a step only keeps the
        squared norm its kernels use)."""
        if "sq_norm" not in self._grad_norm_parts:
            return None
        sq_norm, grad_scale = self._grad_norm_parts["sq_norm"], self._grad_norm_parts["grad_scale"]
        return sq_norm.sqrt() if grad_scale is None else sq_norm.sqrt() / grad_scale

    def _grad_inputs(self) -> dict[str, Tensor | None]:
        """GradScaler's inputs for the step ops (set on the optimizer by ``GradScaler.step``)."""
        return dict(grad_scale=getattr(self, "grad_scale", None), found_inf=getattr(self, "found_inf", None))

    def _total_grad_sq_norm(self, params: list[Tensor], local_grads: list[Tensor],
                            sq_norms: Tensor | None = None) -> Tensor | None:
        """Σ‖g‖² over every gradient of the optimizer (`local_grads`, the local shards of `params`'
        gradients; `sq_norms` when the caller has them per tensor already) when clipping, else None.
        Kept for :attr:`grad_norm`."""
        if self.defaults.get("max_grad_norm") is None or not local_grads:
            return None
        if sq_norms is None:
            try:
                sq_norms = _ops.multi_tensor_sq_norms(local_grads)
            except RuntimeError as e:  # over the grads of every group
                raise op_error(self, e, None, lists_hold_grads=True)
            sq_norms = global_sq_norms(sq_norms, params)
        total = sq_norms.sum()
        self._grad_norm_parts.update(sq_norm=total, grad_scale=getattr(self, "grad_scale", None))
        return total

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch.optim casts every floating state tensor to its param's dtype on load: the float32
        # master copy and state of a half param of a master_weights group are put back as saved
        super().load_state_dict(state_dict)
        # the saved groups' param ids in order, as torch.optim maps them to this optimizer's params
        ids = iter([i for g in state_dict["param_groups"] for i in g["params"]])
        for group in self.param_groups:
            for p in group["params"]:
                saved = state_dict["state"].get(next(ids))
                if not group.get("master_weights") or p.dtype not in HALF or not saved:
                    continue
                for key, value in saved.items():
                    if key != "step" and isinstance(value, Tensor) and value.dtype == torch.float32:
                        self.state[p][key] = value.to(p.device, copy=True)

    def _clip_inputs(self, grad_sq_norm: Tensor | None) -> dict[str, Any]:
        """The clipping arguments of the step ops (max_grad_norm 0: off)."""
        max_grad_norm = self.defaults.get("max_grad_norm")
        return dict(grad_sq_norm=grad_sq_norm, max_grad_norm=0.0 if grad_sq_norm is None else float(max_grad_norm))

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


class CapturableOptimizer(FusedOptimizer):
    """Adam and RAdam: groups whose older state dicts may lack some flags (torch.optim's
    ``__setstate__`` defaults), and step counters on the params' device with ``capturable``."""

    _GROUP_DEFAULTS: dict[str, Any] = dict(maximize=False, decoupled_weight_decay=False, capturable=False,
                                           master_weights=False, stochastic_rounding=False)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self._GROUP_DEFAULTS.items():
                group.setdefault(key, value)

    def _init(self, group: dict) -> dict[str, Callable[[Tensor], Tensor]]:
        # capturable: the step counter lives on the param's device (as torch.optim's capturable=True)
        return dict(self._INIT, step=new_device_step) if group["capturable"] else self._INIT


def check_lr(lr: float | Tensor) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


HALF = (torch.float16, torch.bfloat16)


def rounding_seed() -> int:
    """A step's stochastic rounding seed, drawn from torch's default CPU generator."""
    return int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64))


def param_writes(group: dict[str, Any], params: list[Tensor]) -> tuple[list[Tensor], int | None]:
    """The step ops' ``param_copies`` and ``rounding_seed`` for a group's `params` (the model's):
    with master_weights the params themselves (the kernels update kernel_params), with
    stochastic_rounding a fresh seed."""
    return (params if group.get("master_weights") else [],
            rounding_seed() if group.get("stochastic_rounding") else None)


def kernel_params(state: Any, params: list[Tensor], group: dict[str, Any]) -> list[Tensor]:
    """What the kernels update: the params, or with master_weights their float32 master copies
    (made by state_lists)."""
    if not group.get("master_weights"):
        return params
    return [state.get(p, {}).get("master_param", p) for p in params]


def check_max_grad_norm(max_grad_norm: float | None) -> None:
    if max_grad_norm is not None and not 0.0 < max_grad_norm:
        raise ValueError(f"Invalid max_grad_norm value: {max_grad_norm}")


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


# An entry of a kernel op's tensor list, as its checks name it ('params[3]', 'exp_avgs[0]', ...).
_LIST_ENTRY = re.compile(
    r"'(params|param_copies|grads|exp_avgs|exp_avg_sqs|max_exp_avg_sqs|state_steps|slow)\[(\d+)\]'")
_STATE_KEYS = {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq", "max_exp_avg_sqs": "max_exp_avg_sq",
               "state_steps": "step"}


def op_error(optimizer: Optimizer, error: RuntimeError, group: int | None = None,
             lists_hold_grads: bool = False, every_param: bool = False) -> RuntimeError:
    """A kernel op's argument error as the optimizer's own, the way torch.optim words them:
    "hotkernels.optim.<class>: param group K: expected 'params[J]' to ... (in hotkernels.<op>)".
    The op indexes its lists over the params that have a grad, of the param group at index `group`
    (or of all groups, in order, when None: LAMB's global gradient norm); each entry is renamed after
    the param it belongs to: 'params[J]' (J its position in its group's "params"), "the grad of
    'params[J]'", "state 'exp_avg' of 'params[J]'". `lists_hold_grads`: the op's 'params' list held
    the gradients (multi_tensor_sq_norms). `every_param`: the lists hold every param of the group,
    with a grad or not (Lookahead's sync, its 'slow' list the slow weights). Errors not from our
    ops' checks come back as they are.
    Built only when an op raised: the step itself pays nothing for it."""
    message = str(error)
    op = re.match(r"hotkernels\.(\w+): ", message)
    if op is None:
        return error
    groups = range(len(optimizer.param_groups)) if group is None else [group]
    places = [(k, j) for k in groups for j, p in enumerate(optimizer.param_groups[k]["params"])
              if every_param or p.grad is not None]
    first: list[int] = []

    def rename(m: re.Match) -> str:
        lst, i = m.group(1), int(m.group(2))
        if i >= len(places):
            return m.group(0)
        k, j = places[i]
        first.append(k) if not first else None
        name = f"'params[{j}]'" + ("" if k == first[0] else f" of param group {k}")
        if lst == "grads" or (lst == "params" and lists_hold_grads):
            return f"the grad of {name}"
        if lst == "slow":
            return f"the slow weight of {name}"
        return f"state '{_STATE_KEYS[lst]}' of {name}" if lst in _STATE_KEYS else name

    body = _LIST_ENTRY.sub(rename, message[op.end():])
    where = f"param group {first[0]}: " if first else ""
    named = RuntimeError(f"hotkernels.optim.{type(optimizer).__name__}: {where}{body} (in hotkernels.{op.group(1)})")
    named.__cause__ = error
    return named


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
    # comprehensions, not one loop: with a thousand small params this runs every step
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    if any(g.is_sparse for g in grads):
        raise RuntimeError(f"{name} does not support sparse gradients{sparse_hint}")
    return params, grads


def _dtensor_type() -> type | None:
    """DTensor's class once torch.distributed.tensor is loaded (before that no DTensor exists, and
    importing it here would cost every import of hotkernels seconds)."""
    return getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)


def local_shards(
    name: str, params: list[Tensor], grads: list[Tensor] | None, states: list[list[Tensor]]
) -> tuple[list[Tensor], list[Tensor] | None, list[list[Tensor]]]:
    """The tensors the kernels update in place: a DTensor param (FSDP2, tensor parallel) becomes its
    local shard, with its grad's and its state's. The elementwise updates are then each rank's
    update of its shard; a norm over a whole param needs `global_sq_norms` too.

    A DTensor param needs a DTensor grad (redistributed to the param's placements where they differ,
    as torch's fused Adam does: it is only read) and DTensor state of the param's mesh and placements
    (updated in place: never redistributed). Partial params are refused."""
    dtensor = _dtensor_type()
    # by the set of types (here and in global_sq_norms): isinstance on each of many small params
    # would cost more than their kernels
    if dtensor is not None and any(issubclass(t, dtensor) for t in {type(p) for p in params}):
        return _to_local(name, dtensor, params, grads, states)
    return params, grads, states


def _to_local(
    name: str, dtensor: type, params: list[Tensor], grads: list[Tensor] | None, states: list[list[Tensor]]
) -> tuple[list[Tensor], list[Tensor] | None, list[list[Tensor]]]:
    local_p: list[Tensor] = []
    local_g: list[Tensor] = []
    local_s: list[list[Tensor]] = [[] for _ in states]
    for i, p in enumerate(params):
        g = grads[i] if grads is not None else None
        st = [lst[i] for lst in states]
        if not isinstance(p, dtensor):
            if isinstance(g, dtensor) or any(isinstance(s, dtensor) for s in st):
                raise TypeError(f"{name}: a plain tensor param of shape {tuple(p.shape)} has a DTensor grad or state")
        else:
            what = f"a DTensor param of shape {tuple(p.shape)} and placements {p.placements}"
            if any(pl.is_partial() for pl in p.placements):
                raise TypeError(f"{name} does not support Partial DTensor params: got {what}")
            if g is not None:
                if not isinstance(g, dtensor):
                    raise TypeError(f"{name}: {what} has a plain tensor grad (expected a DTensor)")
                if g.device_mesh != p.device_mesh or g.placements != p.placements:
                    g = g.redistribute(p.device_mesh, p.placements)
            for s in st:
                if not isinstance(s, dtensor) or s.device_mesh != p.device_mesh or s.placements != p.placements:
                    got = f"placements {s.placements}" if isinstance(s, dtensor) else "a plain tensor"
                    raise TypeError(f"{name}: {what} has state of {got} (expected DTensors of its mesh and placements)")
            p, g, st = p.to_local(), None if g is None else g.to_local(), [s.to_local() for s in st]
        local_p.append(p)
        if g is not None:
            local_g.append(g)
        for lst, s in zip(local_s, st):
            lst.append(s)
    return local_p, (local_g if grads is not None else None), local_s


def global_sq_norms(sq_norms: Tensor, params: list[Tensor]) -> Tensor:
    """Squared norms of the params' local shards (one row per param) made those of the whole params,
    in place: a DTensor param's rows are summed over the mesh dims it is sharded on (a replicated
    dim holds copies: not summed). One all-reduce per mesh dim and set of params sharing it."""
    dtensor = _dtensor_type()
    if dtensor is None or not any(issubclass(t, dtensor) for t in {type(p) for p in params}):
        return sq_norms
    rows: dict[tuple[Any, tuple[int, ...]], list[int]] = {}
    for i, p in enumerate(params):
        if isinstance(p, dtensor):
            dims = tuple(d for d, pl in enumerate(p.placements) if pl.is_shard())
            if dims:
                rows.setdefault((p.device_mesh, dims), []).append(i)
    for (mesh, dims), idx in rows.items():
        index = torch.tensor(idx, device=sq_norms.device)
        part = sq_norms.index_select(0, index)
        for d in dims:
            torch.distributed.all_reduce(part, group=mesh.get_group(d))
        sq_norms.index_copy_(0, index, part)
    return sq_norms


def state_lists(state: Any, params: list[Tensor], init: dict[str, Any], keys: list[str],
                master: bool = False) -> list[list[Tensor]]:
    """For each key, the list of that state entry over params; missing entries are created from
    ``init[key](p)`` (lazy state initialisation, also for entries a loaded state lacks). `master`
    (master_weights): a half param gets a float32 copy, state ``master_param``, and its state is
    made like that copy (float32; state loaded in another dtype, as torch.optim's, is widened)."""
    states = [state[p] for p in params]
    if master:
        for p, s in zip(params, states):
            if p.dtype in HALF:
                if "master_param" not in s:
                    s["master_param"] = p.detach().to(torch.float32, memory_format=torch.preserve_format, copy=True)
                for key in keys:
                    if key != "step" and key in s and s[key].dtype != torch.float32:
                        s[key] = s[key].float()
    for key in keys:  # lazy initialisation, like the param (its float32 master where it has one)
        for i in [i for i, s in enumerate(states) if key not in s]:
            p, s = params[i], states[i]
            s[key] = init[key](s["master_param"] if master and p.dtype in HALF else p)
    # one C-level lookup per param once every entry exists: with a thousand small params this runs
    # every step
    return [[s[key] for s in states] for key in keys]
