"""Optimizer step benchmark cases: hotkernels.optim against torch.optim, torch_optimizer and
reference loops of ours.

Parameter sets: ResNet-18-sized (11.7M params in 62 tensors, its real shapes) and many-small
(1000 tensors of 4096). Baselines: for Adam and RAdam, the faster of torch.optim's variants (Adam
fused or foreach, RAdam foreach or for-loop). LAMB, NovoGrad, Ranger and Lookahead have no
torch.optim counterpart: their baseline is torch_optimizer (what users pick today; its Lookahead
over torch's fused Adam), an optional package (the ``bench`` extra): without it these rows have no
baseline and say so. Their results are checked against a ``hotkernels reference loop``: the same
algorithm as a plain-PyTorch per-tensor loop of ours (in the style of timm's Lamb; Ranger and
Lookahead: torch's RAdam or Adam under our foreach Lookahead sync), since torch_optimizer computes
variants (its Lamb is not NVLAMB: no bias correction, no gradient clipping), whose times compare
but whose results do not.

Each call of an implementation is one optimizer step (Ranger: k = 6 steps, Lookahead: k = 5, so
that the sync is counted once per cycle). Ralamb and RangerLars are not benchmarked: neither torch
nor torch_optimizer has them. Least traffic per param, float32, as :class:`~hotkernels.bench.Traffic`
counts it (the state is updated in place): Adam/RAdam read g and update p, m, v. LAMB without
param-sized temporaries: the global gradient norm reads g, the moments pass reads p and g and
updates m and v, the update pass reads m and v and updates p. NovoGrad: the gradient norm reads g,
then g is read and p and m updated. Ranger: 6 RAdam steps and one sync (slow and fast updated);
Lookahead: 5 Adam steps and one sync.

Mixed precision and the training loop, Adam on the same parameter sets: "amp adam"
times what a training step with a ``torch.amp.GradScaler`` adds after backward (``scaler.step``
then ``scaler.update``: its inf check, then ours with the scale and the inf flag read in the step)
against the same optimizer behind GradScaler's own unscale pass (its slow path: unscale and inf
check writing every gradient, a host sync, then the step); the scale is 1 and never grows, so that
repeated calls see the same gradients. "clip adam": ``max_grad_norm`` against
``clip_grad_norm_`` followed by our step (max_norm above the gradients' norm, so that repeated calls
see the same gradients: the factor, 1, is still computed and applied). "bf16 adam": bfloat16 params
and state against torch's fused Adam on them. Least traffic: amp adam, GradScaler's inf check
reads g, then Adam; clip adam, the norm pass reads g, then Adam; bf16 adam, Adam on 2-byte values.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from . import Case, Target, Traffic
from .. import optim as HO

REFERENCE = "hotkernels reference loop"

# The CPU each at >= 80% of the memory ceiling; the GPU against torch's foreach RAdam and at >= 80% of
# the measured copy bandwidth; then what GradScaler, clipping and bfloat16 params add, against torch's
# ways to the same step.
TARGETS = [
    Target(3, "cpu", "adam *", speedup=0.95, floor_share=0.8),
    Target(3, "cpu", "radam *", speedup=2.5, floor_share=0.8),
    Target(3, "cpu", "lamb *", speedup=2.0, floor_share=0.8),
    Target(3, "cpu", "ranger x6 *", speedup=2.0, floor_share=0.8),
    Target(3, "cpu", "novograd *", floor_share=0.8),
    Target(3, "cuda", "adam *", speedup=1.0),
    Target(3, "cuda", "radam *", speedup=4.0),
    Target(3, "cuda", "lamb *", speedup=8.0),
    Target(3, "cuda", "*", floor_share=0.8),
    Target(17, "cpu", "amp adam *", speedup=1.3),
    Target(17, "cuda", "amp adam *", speedup=1.3),
    Target(17, "cpu", "clip adam *", speedup=1.5),
    Target(17, "cuda", "clip adam *", speedup=1.5),
    Target(17, "cpu", "bf16 adam *", speedup=1.0),
]


def resnet18_shapes(width: float = 1.0) -> list[tuple[int, ...]]:
    """The parameter shapes of torchvision's resnet18 (62 tensors, 11.7M params); `width` scales
    the channel counts (quick mode)."""
    c = [max(1, int(w * width)) for w in (64, 128, 256, 512)]
    shapes: list[tuple[int, ...]] = [(c[0], 3, 7, 7), (c[0],), (c[0],)]
    cin = c[0]
    for i, cout in enumerate(c):
        for block in range(2):
            first = block == 0
            shapes += [(cout, cin if first else cout, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,)]
            if first and i > 0:
                shapes += [(cout, cin, 1, 1), (cout,), (cout,)]
        cin = cout
    return shapes + [(1000, c[3]), (1000,)]


def _param_sets(quick: bool) -> dict[str, list[tuple[int, ...]]]:
    if quick:
        return {"resnet18/4": resnet18_shapes(0.25), "250x4k": [(4096,)] * 250}
    return {"resnet18": resnet18_shapes(), "1000x4k": [(4096,)] * 1000}


# --- hotkernels reference loops (plain-PyTorch per-tensor loops, as timm's Lamb and torch_optimizer's)


class LoopLamb(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, max_grad_norm=1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        clip = torch.where(norm > self.max_grad_norm, norm / self.max_grad_norm, torch.ones_like(norm))
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                st["step"] += 1
                grad = p.grad / clip
                st["exp_avg"].mul_(b1).add_(grad, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - b2 ** st["step"])).add_(group["eps"])
                update = (st["exp_avg"] / (1 - b1 ** st["step"])).div_(denom).add_(p, alpha=group["weight_decay"])
                w, u = p.norm(), update.norm()
                one = torch.ones_like(w)
                trust = torch.where(w > 0, torch.where(u > 0, w / u, one), one)
                p.add_(update * trust, alpha=-group["lr"])


class LoopNovoGrad(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.95, 0), eps=1e-8):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                st = self.state[p]
                if not st:
                    st.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros([]))
                norm = torch.sum(torch.pow(p.grad, 2))
                if st["exp_avg_sq"] == 0:
                    st["exp_avg_sq"].copy_(norm)
                else:
                    st["exp_avg_sq"].mul_(b2).add_(norm, alpha=1 - b2)
                grad = p.grad / st["exp_avg_sq"].sqrt().add_(group["eps"])
                st["exp_avg"].mul_(b1).add_(grad)
                p.add_(st["exp_avg"], alpha=-group["lr"])


class ForeachLookahead:
    """Lookahead over a torch optimizer with a foreach sync (as users write it)."""

    def __init__(self, inner, k=6, alpha=0.5):
        self.inner, self.k, self.alpha, self.t = inner, k, alpha, 0
        self.fast = [p for g in inner.param_groups for p in g["params"]]
        self.slow = [p.detach().clone() for p in self.fast]

    @torch.no_grad()
    def step(self):
        self.inner.step()
        self.t += 1
        if self.t % self.k == 0:
            torch._foreach_lerp_(self.slow, self.fast, self.alpha)
            torch._foreach_copy_(self.fast, self.slow)


class ScaledStep:
    """An optimizer stepped as a training loop with a torch.amp.GradScaler steps it (scaler.step,
    then scaler.update). `in_step` False: behind GradScaler's own unscale pass, as for an optimizer
    without ``_step_supports_amp_scaling``. Scale 1, never grown: repeated calls see the same
    gradients (the unscale pass still reads and writes each)."""

    def __init__(self, opt: torch.optim.Optimizer, device: str, in_step: bool) -> None:
        if not in_step:
            opt._step_supports_amp_scaling = False
        self.opt = opt
        self.scaler = torch.amp.GradScaler(device, init_scale=1.0, growth_interval=2**30)
        self.scaler.scale(torch.ones((), device=device))  # the scale tensor is made by the first scale()

    def step(self) -> None:
        self.scaler.step(self.opt)
        self.scaler.update()


class ClipThenStep:
    """torch.nn.utils.clip_grad_norm_ over the params, then the optimizer's step."""

    def __init__(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], max_norm: float) -> None:
        self.opt, self.params, self.max_norm = opt, params, max_norm

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()


def _setup(shapes, device: str, makers: dict[str, Callable], steps_per_call: int = 1, dtype=torch.float32):
    def setup():
        torch.manual_seed(0)
        init = [torch.randn(s, device=device, dtype=dtype) for s in shapes]
        grads = [torch.randn(s, device=device, dtype=dtype) * 1e-2 for s in shapes]
        impls = {}
        for name, make in makers.items():
            params = [p.clone().requires_grad_() for p in init]
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt = make(params)

            def run(opt=opt, params=params):
                for _ in range(steps_per_call):
                    opt.step()
                return params

            impls[name] = run
        return impls

    return setup


def _torch_optimizer(name: str, inner: Callable | None = None, **kwargs) -> dict[str, Callable]:
    """{"torch_optimizer": maker} when the package is installed, else {} (the case then reports
    its baseline as missing). ``inner`` makes the optimizer a wrapper (Lookahead) wraps."""
    try:
        import torch_optimizer
    except ImportError:
        return {}
    return {"torch_optimizer": lambda p: getattr(torch_optimizer, name)(inner(p) if inner else p, **kwargs)}


def cases(device: str, quick: bool = False) -> list[Case]:
    out = []
    # Least traffic per float32 param, pass by pass (module docstring): a step's passes each have a
    # floor pass of their own, as a fused pass over all their streams was no floor (Zen 4, ResNet-18
    # set: at AVX2 hotkernels' LAMB, amp and clip Adam beat it by 4-10%; at AVX-512 the two passes of
    # amp and clip Adam took 7.6 ms against its 8.7, LAMB's three about even, 13.4 and 13.6 ms). The k
    # steps of Ranger and Lookahead are k passes over the same buffers, the sync spread over them.
    radam = Traffic(read=4, update=12)
    per_param = {"adam": (radam,), "radam": (radam,),
                 "lamb": (Traffic(read=4), Traffic(read=8, update=8), Traffic(read=8, update=4)),
                 "novograd": (Traffic(read=4), Traffic(read=4, update=8)),
                 "ranger x6": (6 * radam + Traffic(update=8),), "lookahead adam x5": (5 * radam + Traffic(update=8),),
                 "amp adam": (Traffic(read=4), radam), "clip adam": (Traffic(read=4), radam),
                 "bf16 adam": (Traffic(read=2, update=6),)}
    for set_name, shapes in _param_sets(quick).items():
        n = sum(math.prod(s) for s in shapes)
        size = f"{set_name} {n / 1e6:.1f}M"

        def add(name: str, makers: dict[str, Callable], baselines: tuple[str, ...], reference: str = "",
                steps: int = 1, dtype: torch.dtype = torch.float32) -> None:
            passes = tuple(n * t for t in per_param[name])
            assert steps == 1 or len(passes) == 1, "k steps are k passes over the same buffers: one traffic"
            out.append(Case("optim", f"{name} {size}", device, _setup(shapes, device, makers, steps, dtype),
                            baselines=baselines, reference=reference, traffic=sum(passes, Traffic()),
                            passes=passes if len(passes) > 1 else steps))

        add("adam", {"torch Adam fused": lambda p: torch.optim.Adam(p, fused=True),
                     "torch Adam foreach": lambda p: torch.optim.Adam(p, foreach=True),
                     "hotkernels": lambda p: HO.Adam(p)}, ("torch Adam fused", "torch Adam foreach"))
        add("radam", {"torch RAdam foreach": lambda p: torch.optim.RAdam(p, foreach=True),
                      "torch RAdam for-loop": lambda p: torch.optim.RAdam(p, foreach=False),
                      "hotkernels": lambda p: HO.RAdam(p), **_torch_optimizer("RAdam")},
            ("torch RAdam foreach", "torch RAdam for-loop"))
        add("lamb", {**_torch_optimizer("Lamb"), REFERENCE: lambda p: LoopLamb(p), "hotkernels": lambda p: HO.Lamb(p)},
            ("torch_optimizer",), REFERENCE)
        add("novograd", {**_torch_optimizer("NovoGrad"), REFERENCE: lambda p: LoopNovoGrad(p),
                         "hotkernels": lambda p: HO.NovoGrad(p)}, ("torch_optimizer",), REFERENCE)
        ranger = dict(betas=(0.95, 0.999), eps=1e-5)
        add("ranger x6", {**_torch_optimizer("Ranger", **ranger, k=6),
                          REFERENCE: lambda p: ForeachLookahead(torch.optim.RAdam(p, **ranger, foreach=True)),
                          "hotkernels": lambda p: HO.Ranger(p)}, ("torch_optimizer",), REFERENCE, steps=6)

        def fused_adam(p: list[torch.Tensor]) -> torch.optim.Optimizer:  # the inner optimizer of both Lookaheads
            return torch.optim.Adam(p, fused=True)

        add("lookahead adam x5", {**_torch_optimizer("Lookahead", fused_adam, k=5),
                                  REFERENCE: lambda p: ForeachLookahead(fused_adam(p), k=5),
                                  "hotkernels": lambda p: HO.Lookahead(HO.Adam(p), k=5)},
            ("torch_optimizer",), REFERENCE, steps=5)

        unscale_pass = "torch GradScaler unscale pass + hotkernels Adam"  # torch's part named first
        add("amp adam", {unscale_pass: lambda p: ScaledStep(HO.Adam(p), device, in_step=False),
                         "torch Adam fused, GradScaler": lambda p: ScaledStep(torch.optim.Adam(p, fused=True), device,
                                                                              in_step=True),
                         "hotkernels": lambda p: ScaledStep(HO.Adam(p), device, in_step=True)}, (unscale_pass,))
        clip_then_step = "torch clip_grad_norm_ + hotkernels Adam"
        add("clip adam", {clip_then_step: lambda p: ClipThenStep(HO.Adam(p), p, 1e6),
                          "hotkernels": lambda p: HO.Adam(p, max_grad_norm=1e6)}, (clip_then_step,))
        if device == "cpu":  # bfloat16 params on the CPU are new here; CUDA has always taken them
            add("bf16 adam", {"torch Adam fused": lambda p: torch.optim.Adam(p, fused=True),
                              "hotkernels": lambda p: HO.Adam(p)}, ("torch Adam fused",), dtype=torch.bfloat16)
    return out
