"""Fused optimizers: multi-step trajectories against torch.optim (Adam, AdamW, RAdam) and against
plain-PyTorch references written here from the papers' formulas (LAMB, Ralamb, NovoGrad,
Lookahead); state_dict round trips and torch.optim interop; LR schedulers; closures; bad input."""

from __future__ import annotations

import copy
import math
import pathlib
import re

import pytest
import torch

import hotkernels
import hotkernels.optim as HO
from tests.conftest import U32, assert_same_nans, run_with_isa

# float64: the same formulas in another association order, a few ulp apart per step. float32 on the
# CPU: assert_float32_trajectory (below). TOL[torch.float32] is left for the CUDA-only tests.
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=2e-5, atol=2e-6)}

# float32 trajectories. Ours and the reference's float32 run (torch.optim's, or the plain-PyTorch
# references below) are each compared with the same reference run in float64 from the same float32
# params and gradients ("exact": its own error is 2^-29 times theirs). Each step rounds a param once
# when it subtracts the update (<= u·|θ|, u = 2^-24) and the update itself is off by a few ulp of
# its size (lr·|m̂/√v̂| <= ~lr, or LAMB's lr·‖θ‖/‖u‖·|u| <= lr·|θ|-ish for lr <= 0.1: under one more
# u·|θ|). So after t steps a float32 run is within F32_STEP_ULPS·t·u·max|exact| of the float64 one;
# ours must be within that, or within 4 times the reference's own float32 error where that is
# larger (as tests/conftest.py's assert_float32_like_torch). A moment rounds more often per step:
# v ← β₂v + (1 − β₂)g² rounds the constants β₂ and 1 − β₂ to float32, g², both products and the
# sum (6u of max|v|; m ← β₁m + (1 − β₁)g one fewer), hence F32_STATE_STEP_ULPS for the state (on
# LAMB's 65539-element params 2u·t let through no margin: 0.99 of it on the first step). A param
# multiplied by (1 + 2^-20) at each step (16u) drifts 16·t·u away; a first moment so multiplied,
# 16u·Σβ₁^k·t-ish.
F32_STEP_ULPS = 2.0
F32_STATE_STEP_ULPS = 6.0


def assert_float32_trajectory(ours: torch.Tensor, theirs: torch.Tensor, exact: torch.Tensor, steps: int,
                              what: str = "", step_ulps: float = F32_STEP_ULPS) -> None:
    """float32 `ours` and `theirs` (the reference's float32 run) against the float64 run `exact`, after
    `steps` steps: max|ours − exact| <= max(4·max|theirs − exact|, step_ulps·steps·u·max|exact|)
    (step_ulps: F32_STEP_ULPS for params, F32_STATE_STEP_ULPS for the state)."""
    ours, theirs = torch.as_tensor(ours).detach(), torch.as_tensor(theirs).detach()
    exact = torch.as_tensor(exact).detach().double()
    assert ours.dtype == theirs.dtype == torch.float32 and ours.shape == exact.shape, (what, ours.dtype, ours.shape)
    if not ours.numel():
        return
    ours_err = (ours.double() - exact).abs().max().item()
    theirs_err = (theirs.double() - exact).abs().max().item()
    floor = step_ulps * steps * U32 * exact.abs().max().item()
    assert ours_err <= max(4 * theirs_err, floor), \
        f"{what}: max |err| {ours_err:.3g}, the reference's {theirs_err:.3g}, the float32 bound {floor:.3g} ({steps} steps)"
STEPS = 12
SHAPES_A = [(33, 17), (100,)]
SHAPES_B = [(7, 5, 3), ()]  # a 0-dim param too


def make_params(dtype, device):
    a = [torch.randn(s, dtype=dtype, device=device) for s in SHAPES_A]
    b = [torch.randn(s, dtype=dtype, device=device) for s in SHAPES_B]
    return a, b


def clone(ps):
    return [p.detach().clone().requires_grad_() for p in ps]


def shadow(ps):
    """float64 copies of (float32) params: the exact run of a float32 trajectory."""
    return [p.detach().double().requires_grad_() for p in ps]


def groups(a, b, group_b):
    return [{"params": a}, {"params": b, **group_b}]


def set_grads(ref_params, our_params, step, skip=None, exact_params=None):
    """Fresh gradients, the same values in separate tensors for the reference and for ours (and in
    float64 for the exact run's params, when given). The param at index `skip` gets none at step 3
    (so its step count falls behind the others)."""
    for i, (r, o) in enumerate(zip(ref_params, our_params)):
        e = exact_params[i] if exact_params else None
        if skip == i and step == 3:
            r.grad = o.grad = None
            if e is not None:
                e.grad = None
            continue
        g = torch.randn_like(r)
        r.grad = g.clone()
        o.grad = g.clone()
        if e is not None:
            e.grad = g.to(e.dtype)


def run_pair(ref_opt, our_opt, ref_params, our_params, steps=STEPS, skip=1, check_grads=True, on_step=None,
             exact=None):
    """`steps` steps of the reference and ours with the same gradients; `exact`: (optimizer, params)
    of the float64 run of a float32 trajectory, stepped alongside."""
    for t in range(steps):
        set_grads(ref_params, our_params, t, skip, exact[1] if exact else None)
        before = [None if p.grad is None else p.grad.clone() for p in our_params]
        ref_opt.step()
        our_opt.step()
        if exact:
            exact[0].step()
        if check_grads:  # never written into p.grad
            for p, g in zip(our_params, before):
                assert (p.grad is None and g is None) or torch.equal(p.grad, g)
        if on_step is not None:
            on_step(t)


def assert_params_close(ref_params, our_params, dtype, exact_params=None, steps=STEPS):
    """float64: ours within TOL of the reference; float32: assert_float32_trajectory against the
    float64 run's `exact_params` after `steps` steps."""
    if dtype == torch.float32 and exact_params is not None:
        for i, (r, o, e) in enumerate(zip(ref_params, our_params, exact_params)):
            if o.dtype == torch.float32:
                assert_float32_trajectory(o, r, e, steps, f"param {i}")
            else:
                torch.testing.assert_close(o, r, **TOL[o.dtype])
        return
    for r, o in zip(ref_params, our_params):
        torch.testing.assert_close(o, r, **TOL[dtype])


def assert_state_close(ref_opt, our_opt, ref_params, our_params, dtype, exact=None, steps=STEPS):
    exact_opt, exact_params = exact if exact else (None, [None] * len(ref_params))
    for i, (r, o, e) in enumerate(zip(ref_params, our_params, exact_params)):
        rs, os_ = ref_opt.state[r], our_opt.state[o]
        assert set(rs) == set(os_), (set(rs), set(os_))
        for key in rs:
            if key == "step":
                assert float(rs[key]) == float(os_[key])
            elif dtype == torch.float32 and exact_opt is not None:
                assert_float32_trajectory(os_[key], rs[key], exact_opt.state[e][key], steps, f"param {i} {key}",
                                          F32_STATE_STEP_ULPS)
            else:
                torch.testing.assert_close(os_[key], rs[key], **TOL[dtype])


DTYPES = [torch.float64, torch.float32]

# ---------------------------------------------------------------------------------------- Adam / AdamW

ADAM_CASES = {
    "plain": ({}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    "amsgrad": ({"amsgrad": True}, {"lr": 2e-2, "betas": (0.5, 0.9)}),
    "maximize_wd": ({"maximize": True, "weight_decay": 0.05}, {"lr": 1e-2, "weight_decay": 0.0}),
    "eps": ({"eps": 1e-3, "lr": 0.1}, {"eps": 0.0, "lr": 1e-3}),
}


def tensor_lr(dtype):
    return torch.tensor(0.02, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(ADAM_CASES))
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_adam_matches_torch(device, dtype, case, cls):
    kw, group_b = ADAM_CASES[case]
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref = getattr(torch.optim, cls)(groups(ra, rb, group_b), **kw)
    ours = getattr(HO, cls)(groups(oa, ob, group_b), **kw)
    exact = getattr(torch.optim, cls)(groups(ea, eb, group_b), **kw)
    run_pair(ref, ours, ra + rb, oa + ob, exact=(exact, ea + eb))
    assert_params_close(ra + rb, oa + ob, dtype, ea + eb)
    assert_state_close(ref, ours, ra + rb, oa + ob, dtype, (exact, ea + eb))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_tensor_lr(device, dtype):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref = torch.optim.Adam(groups(ra, rb, {"lr": tensor_lr(dtype) / 4}), lr=tensor_lr(dtype), amsgrad=True)
    ours = HO.Adam(groups(oa, ob, {"lr": tensor_lr(dtype) / 4}), lr=tensor_lr(dtype), amsgrad=True)
    # the float64 run with the same (float32-rounded) learning rates
    exact = torch.optim.Adam(groups(ea, eb, {"lr": (tensor_lr(dtype) / 4).double()}), lr=tensor_lr(dtype).double(),
                             amsgrad=True)
    run_pair(ref, ours, ra + rb, oa + ob, exact=(exact, ea + eb))
    assert_params_close(ra + rb, oa + ob, dtype, ea + eb)


def test_adam_mixed_dtypes_in_one_group(device):
    ps = [torch.randn(40, 3, dtype=torch.float32, device=device), torch.randn(77, dtype=torch.float64, device=device)]
    r, o, e = clone(ps), clone(ps), shadow(ps)
    ref, ours, exact = torch.optim.AdamW(r, lr=0.01), HO.AdamW(o, lr=0.01), torch.optim.AdamW(e, lr=0.01)
    run_pair(ref, ours, r, o, skip=None, exact=(exact, e))
    assert_params_close(r, o, torch.float32, e)  # the float64 param against TOL[float64]


def test_adam_large_tensor_spans_threads():
    """Tensors bigger than one span (16k elements), with a tail that is not a whole vector."""
    ps = [torch.randn(100_003, dtype=torch.float64), torch.randn(16384 * 3 + 5, dtype=torch.float64)]
    r, o = clone(ps), clone(ps)
    ref, ours = torch.optim.Adam(r, lr=0.01, amsgrad=True), HO.Adam(o, lr=0.01, amsgrad=True)
    run_pair(ref, ours, r, o, steps=3, skip=None)
    assert_params_close(r, o, torch.float64)


@pytest.mark.parametrize("cls,kw", [("Adam", {}), ("Adam", {"amsgrad": True, "maximize": True}), ("AdamW", {"weight_decay": 0.0}),
                                    ("RAdam", {}), ("RAdam", {"decoupled_weight_decay": True})])
def test_nan_param_keeps_moments_finite_as_torch(device, cls, kw):
    """Decided NaN behaviour: as torch.optim, the L2 term is skipped when λ = 0, so NaN and infinite
    params (here set by hand; in training a 0/0 when ε = 0) leave the moments finite, and the other
    elements step as torch's. (Adding 0·p would make the moments of those elements NaN for good.)"""
    p = torch.randn(40, dtype=torch.float64, device=device)
    p[3], p[17], p[20] = float("nan"), float("inf"), -float("inf")
    r, o = clone([p]), clone([p])
    ref, ours = getattr(torch.optim, cls)(r, lr=0.01, **kw), getattr(HO, cls)(o, lr=0.01, **kw)
    run_pair(ref, ours, r, o, steps=8, skip=None)
    assert_same_nans(o[0].detach(), r[0].detach(), "params", **TOL[torch.float64])
    for key in ref.state[r[0]]:
        if key != "step":
            assert ours.state[o[0]][key].isfinite().all(), key
    assert_state_close(ref, ours, r, o, torch.float64)


# ---------------------------------------------------------------------------------------------- RAdam

RADAM_CASES = {
    # ρ_t first exceeds 5 at step 6 for β₂ = 0.999, 0.99 and 0.9: the 12 steps cover both regimes.
    "plain": ({}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    "decoupled": ({"decoupled_weight_decay": True, "weight_decay": 0.05}, {"lr": 1e-2, "betas": (0.5, 0.9)}),
    "maximize": ({"maximize": True, "eps": 1e-3}, {"lr": 1e-2, "weight_decay": 0.02}),
    "tensor_lr": ({"lr": "tensor"}, {"lr": 5e-3}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(RADAM_CASES))
def test_radam_matches_torch(device, dtype, case):
    kw, group_b = RADAM_CASES[case]
    if kw.get("lr") == "tensor":
        kw = {"lr": tensor_lr(dtype)}
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref = torch.optim.RAdam(groups(ra, rb, group_b), **kw)
    ours = HO.RAdam(groups(oa, ob, group_b), **kw)
    exact_kw = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    exact = torch.optim.RAdam(groups(ea, eb, group_b), **exact_kw)

    def on_step(t):  # every step, so the steps around the rectification threshold are each checked
        assert_params_close(ra + rb, oa + ob, dtype, ea + eb, t + 1)

    run_pair(ref, ours, ra + rb, oa + ob, on_step=on_step, exact=(exact, ea + eb))
    assert_state_close(ref, ours, ra + rb, oa + ob, dtype, (exact, ea + eb))


@pytest.mark.parametrize("beta2", [0.999, 0.99, 0.9])
def test_radam_threshold_steps(beta2):
    """The first steps one by one, where ρ_t crosses 5 (between steps 5 and 6 for these β₂)."""
    p = [torch.randn(257, dtype=torch.float64)]
    r, o = clone(p), clone(p)
    ref, ours = torch.optim.RAdam(r, lr=0.1, betas=(0.9, beta2)), HO.RAdam(o, lr=0.1, betas=(0.9, beta2))
    run_pair(ref, ours, r, o, steps=10, skip=None, on_step=lambda t: assert_params_close(r, o, torch.float64))


# --------------------------------------------------- references from the papers' formulas (plain PyTorch)


def ref_norm(x: torch.Tensor) -> float:
    """‖x‖. torch's norm() sums the plain squares: a float64 tensor of several elements below ~1e-154
    has norm 0, one above ~1e154 inf. So float64 is first divided by its largest magnitude (a few ulp
    of rounding); float32 stays torch's (squares in float32, as our float32 kernels sum them)."""
    m = x.abs().max().item() if x.numel() else 0.0
    if x.dtype != torch.float64 or not 0 < m < math.inf:
        return x.norm().item()
    return m * (x / m).norm().item()


class RefLamb(torch.optim.Optimizer):
    """LAMB, NVLAMB variant (You et al. 2020; apex FusedLAMB, timm Lamb), one tensor at a time."""

    def __init__(self, params, lr=1e-3, bias_correction=True, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01,
                 grad_averaging=True, max_grad_norm=1.0, trust_clip=False, always_adapt=False):
        super().__init__(params, dict(lr=lr, bias_correction=bias_correction, betas=betas, eps=eps,
                                      weight_decay=weight_decay, grad_averaging=grad_averaging,
                                      trust_clip=trust_clip, always_adapt=always_adapt))
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.sqrt(sum(((g.double() ** 2).sum() for g in grads), torch.tensor(0.0))).item()
        clip = norm / self.max_grad_norm if self.max_grad_norm is not None and norm > self.max_grad_norm else 1.0
        for group in self.param_groups:
            b1, b2 = group["betas"]
            b3 = 1 - b1 if group["grad_averaging"] else 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["step"] += 1
                t = st["step"]
                g = p.grad / clip
                st["m"] = b1 * st["m"] + b3 * g
                st["v"] = b2 * st["v"] + (1 - b2) * g * g
                bc1, bc2 = (1 - b1**t, 1 - b2**t) if group["bias_correction"] else (1.0, 1.0)
                u = (st["m"] / bc1) / (st["v"].sqrt() / math.sqrt(bc2) + group["eps"]) + group["weight_decay"] * p
                trust = 1.0
                if group["weight_decay"] != 0 or group["always_adapt"]:
                    w_norm, u_norm = ref_norm(p), ref_norm(u)
                    trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
                    if group["trust_clip"]:
                        trust = min(trust, 1.0)
                p.sub_(group["lr"] * trust * u)


def radam_rect(beta2, t):
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)
    if rho_t <= 5:
        return None
    return math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))


class RefRalamb(torch.optim.Optimizer):
    """RAdam's step u (Liu et al. 2020), plus decoupled λθ, scaled by LAMB's trust ratio ‖θ‖/‖u‖."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                st["step"] += 1
                t, g = st["step"], p.grad
                st["m"] = b1 * st["m"] + (1 - b1) * g
                st["v"] = b2 * st["v"] + (1 - b2) * g * g
                m_hat = st["m"] / (1 - b1**t)
                rect = radam_rect(b2, t)
                u = m_hat if rect is None else rect * m_hat * math.sqrt(1 - b2**t) / (st["v"].sqrt() + group["eps"])
                u = u + group["weight_decay"] * p
                w_norm, u_norm = ref_norm(p), ref_norm(u)
                trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
                p.sub_(group["lr"] * trust * u)


class RefNovoGrad(torch.optim.Optimizer):
    """NovoGrad (Ginsburg et al. 2019) as torch_optimizer.NovoGrad: a per-layer second moment."""

    def __init__(self, params, lr=1e-3, betas=(0.95, 0), eps=1e-8, weight_decay=0, grad_averaging=False,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      grad_averaging=grad_averaging, amsgrad=amsgrad))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st.update(m=torch.zeros_like(p), v=0.0, vmax=0.0)
                norm = (p.grad.double() ** 2).sum().item()
                st["v"] = norm if st["v"] == 0 else b2 * st["v"] + (1 - b2) * norm
                st["vmax"] = max(st["vmax"], st["v"])
                v = st["vmax"] if group["amsgrad"] else st["v"]
                g = p.grad / (math.sqrt(v) + group["eps"]) + group["weight_decay"] * p
                if group["grad_averaging"]:
                    g = g * (1 - b1)
                st["m"] = b1 * st["m"] + g
                p.sub_(group["lr"] * st["m"])


class RefLookahead:
    """Lookahead (Zhang et al. 2019): slow weights start as the params; every k steps
    slow += α(fast − slow), fast = slow."""

    def __init__(self, inner, k, alpha):
        self.inner, self.k, self.alpha, self.t = inner, k, alpha, 0
        self.slow = [p.detach().clone() for g in inner.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self):
        self.inner.step()
        self.t += 1
        if self.t % self.k == 0:
            fast = [p for g in self.inner.param_groups for p in g["params"]]
            for f, s in zip(fast, self.slow):
                s.add_(self.alpha * (f - s))
                f.copy_(s)


LAMB_CASES = {
    "defaults": ({}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    "no_clip_trust_clip": ({"max_grad_norm": None, "trust_clip": True, "lr": 0.05}, {"weight_decay": 0.0}),
    "always_adapt": ({"always_adapt": True, "weight_decay": 0.0, "grad_averaging": False},
                     {"lr": 1e-2, "weight_decay": 0.02}),
    "no_bias_correction": ({"bias_correction": False, "max_grad_norm": 100.0}, {"eps": 1e-3}),
}


def compare_with_reference(ref_cls, our_cls, kw, group_b, device, dtype, skip=1):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref = ref_cls(groups(ra, rb, group_b), **kw)
    ours = our_cls(groups(oa, ob, group_b), **kw)
    exact = ref_cls(groups(ea, eb, group_b), **kw)
    run_pair(ref, ours, ra + rb, oa + ob, skip=skip, exact=(exact, ea + eb),
             on_step=lambda t: assert_params_close(ra + rb, oa + ob, dtype, ea + eb, t + 1))
    return ref, ours


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(LAMB_CASES))
def test_lamb_matches_reference(device, dtype, case):
    kw, group_b = LAMB_CASES[case]
    # skip=None: the reference keeps one step count per param like ours; no param misses a step here
    # so that the global gradient norm covers the same set in both.
    compare_with_reference(RefLamb, HO.Lamb, kw, group_b, device, dtype, skip=None)


def test_lamb_clipping_active(device):
    """Gradients large enough that the global norm clip (max_grad_norm=1) applies at every step."""
    dtype = torch.float64
    a, b = make_params(dtype, device)
    ra, rb, oa, ob = clone(a), clone(b), clone(a), clone(b)
    ref, ours = RefLamb(groups(ra, rb, {}), lr=0.01), HO.Lamb(groups(oa, ob, {}), lr=0.01)
    for _ in range(5):
        for r, o in zip(ra + rb, oa + ob):
            g = 50 * torch.randn_like(r)
            r.grad, o.grad = g.clone(), g.clone()
        ref.step()
        ours.step()
    assert_params_close(ra + rb, oa + ob, dtype)
    assert float(ours.state[oa[0]]["step"]) == 5


def test_lamb_zero_param_trust_ratio_is_one(device):
    """‖p‖ = 0 gives trust ratio 1 (the plain Adam-like step), not 0 or NaN."""
    p = torch.zeros(10, dtype=torch.float64, device=device, requires_grad=True)
    r = p.detach().clone().requires_grad_()
    ours, ref = HO.Lamb([p], lr=0.1), RefLamb([r], lr=0.1)
    g = torch.randn(10, dtype=torch.float64, device=device) * 0.01
    p.grad, r.grad = g.clone(), g.clone()
    ours.step()
    ref.step()
    assert p.abs().sum() > 0
    torch.testing.assert_close(p, r, **TOL[torch.float64])


# float64 trust ratios whose plain squared norms leave double's range (csrc/math/optim.h, SqSums).
# β₁ = 2.2e-194 and ε = 0: a zero gradient makes u ~1e-194 times the step before's.
TINY_STEP = dict(lr=0.1, betas=(2.2e-194, 0.999), eps=0.0, weight_decay=0.0)


def assert_params_close_at_scale(ref_params, our_params):
    """TOL[float64] with atol shrunk for params below 1 to their magnitude: atol 1e-14 alone would
    pass any two params of ~1e-154."""
    for r, o in zip(ref_params, our_params):
        tol = TOL[torch.float64]
        torch.testing.assert_close(o, r, rtol=tol["rtol"], atol=tol["atol"] * min(1.0, r.abs().max().item()))


def step_with_grads(ref, ours, ref_params, our_params, kinds):
    """One step of both per kind: random gradients ("randn") or zero ones ("zero")."""
    for kind in kinds:
        for r, o in zip(ref_params, our_params):
            g = torch.zeros_like(r) if kind == "zero" else torch.randn_like(r)
            r.grad, o.grad = g.clone(), g.clone()
        ref.step()
        ours.step()


def test_rangerlars_trust_ratio_of_a_tiny_step(device):
    """A hypothesis find (test_optim_properties.py::test_ranger, HOTKERNELS_HYPOTHESIS=long): β₁ =
    2.2e-194, ε = 0 and a zero gradient at step 2 make u ≈ 1e-194, whose plain Σu² is 0 in float64,
    so the trust ratio ‖θ‖/‖u‖ ≈ 1e194 fell back to 1."""
    ps = [torch.randn(s, dtype=torch.float64, device=device) for s in [(4, 3), (5,), ()]]
    r, o = clone(ps), clone(ps)
    ref = RefLookahead(RefRalamb(r, **TINY_STEP), k=2, alpha=0.5)
    ours = HO.RangerLars(o, **TINY_STEP, k=2, alpha=0.5)
    step_with_grads(ref, ours, r, o, ["randn", "zero", "randn"])
    assert_params_close_at_scale(r, o)


LAMB_FAMILY = {"Lamb": (RefLamb, HO.Lamb, {"always_adapt": True}), "Ralamb": (RefRalamb, HO.Ralamb, {})}


@pytest.mark.parametrize("name", list(LAMB_FAMILY))
def test_trust_ratio_of_tiny_norms_mixed_with_normal_ones(device, name):
    """Params mixing tiny and normal values, and a param whose values straddle 2^-511 ≈ 1.5e-154
    (where the scaled sum of the small squares starts: both sums count), stepped with u ~1e-194
    (TINY_STEP) after zero gradients. 25 elements: full vectors and a tail at every instruction set."""
    ref_cls, our_cls, kw = LAMB_FAMILY[name]
    ps = [torch.tensor(v, dtype=torch.float64, device=device).repeat(5)
          for v in ([3.0, 1e-170, -2e-160, 1e-300, 0.5], [1e-154, 2e-154, -1.2e-154, 1.6e-154, 5e-160])]
    r, o = clone(ps), clone(ps)
    ref, ours = ref_cls(r, **TINY_STEP, **kw), our_cls(o, **TINY_STEP, **kw)
    step_with_grads(ref, ours, r, o, ["randn", "zero", "zero", "randn"])
    assert_params_close_at_scale(r, o)


@pytest.mark.parametrize("name", list(LAMB_FAMILY))
def test_trust_ratio_of_huge_norms(device, name):
    """float64 params ~1e200, and a param straddling 2^486 ≈ 2e146 (where the scaled sum of the big
    squares starts): the plain Σθ² and Σu² (u ∋ λθ) overflowed to inf, the trust ratio inf/inf = NaN."""
    ref_cls, our_cls, kw = LAMB_FAMILY[name]
    ps = [torch.randn(5, 5, dtype=torch.float64, device=device) * 1e200,
          torch.tensor([1e146, -3e146, 2e146, 5e145, 1.0], dtype=torch.float64, device=device).repeat(5)]
    r, o = clone(ps), clone(ps)
    ref, ours = ref_cls(r, lr=0.1, weight_decay=0.01, **kw), our_cls(o, lr=0.1, weight_decay=0.01, **kw)
    step_with_grads(ref, ours, r, o, ["randn", "randn"])
    assert_params_close_at_scale(r, o)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw,group_b", [({}, {"lr": 3e-3, "betas": (0.8, 0.99), "weight_decay": 0.1}),
                                        ({"weight_decay": 0.01, "eps": 1e-5}, {"lr": 2e-2})])
def test_ralamb_matches_reference(device, dtype, kw, group_b):
    compare_with_reference(RefRalamb, HO.Ralamb, kw, group_b, device, dtype)


NOVOGRAD_CASES = {
    "defaults": ({}, {"lr": 3e-3, "betas": (0.8, 0.5), "weight_decay": 0.1}),
    "averaging_amsgrad": ({"grad_averaging": True, "amsgrad": True, "betas": (0.9, 0.7)}, {"lr": 2e-2}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(NOVOGRAD_CASES))
def test_novograd_matches_reference(device, dtype, case):
    kw, group_b = NOVOGRAD_CASES[case]
    compare_with_reference(RefNovoGrad, HO.NovoGrad, kw, group_b, device, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lookahead_over_adam_matches_reference(device, dtype):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    group_b = {"lr": 3e-2, "weight_decay": 0.1}
    ref = RefLookahead(torch.optim.Adam(groups(ra, rb, group_b), lr=0.01), k=3, alpha=0.4)
    ours = HO.Lookahead(HO.Adam(groups(oa, ob, group_b), lr=0.01), k=3, alpha=0.4)
    exact = RefLookahead(torch.optim.Adam(groups(ea, eb, group_b), lr=0.01), k=3, alpha=0.4)
    run_pair(ref, ours, ra + rb, oa + ob, exact=(exact, ea + eb),
             on_step=lambda t: assert_params_close(ra + rb, oa + ob, dtype, ea + eb, t + 1))
    for i, (s_ref, s_ours, s_exact) in enumerate(zip(ref.slow, ours.slow, exact.slow)):
        if dtype == torch.float32:
            assert_float32_trajectory(s_ours, s_ref, s_exact, STEPS, f"slow weight {i}")
        else:
            torch.testing.assert_close(s_ours, s_ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_ranger_is_lookahead_over_radam(device, dtype):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref, exact = (RefLookahead(torch.optim.RAdam(groups(pa, pb, {"lr": 0.02}), lr=1e-3, betas=(0.95, 0.999), eps=1e-5),
                               k=6, alpha=0.5) for pa, pb in ((ra, rb), (ea, eb)))
    ours = HO.Ranger(groups(oa, ob, {"lr": 0.02}))
    run_pair(ref, ours, ra + rb, oa + ob, steps=13, exact=(exact, ea + eb))
    assert_params_close(ra + rb, oa + ob, dtype, ea + eb, 13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rangerlars_is_lookahead_over_ralamb(device, dtype):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob, ea, eb = clone(a), clone(b), clone(a), clone(b), shadow(a), shadow(b)
    ref, exact = (RefLookahead(RefRalamb(groups(pa, pb, {"lr": 0.02}), lr=1e-3, betas=(0.95, 0.999), eps=1e-5),
                               k=6, alpha=0.5) for pa, pb in ((ra, rb), (ea, eb)))
    ours = HO.RangerLars(groups(oa, ob, {"lr": 0.02}))
    run_pair(ref, ours, ra + rb, oa + ob, steps=13, exact=(exact, ea + eb))
    assert_params_close(ra + rb, oa + ob, dtype, ea + eb, 13)


@pytest.mark.parametrize("name", ["Lamb", "Ralamb", "NovoGrad", "Ranger", "RangerLars"])
def test_state_dict_round_trip(device, name):
    """Save after 4 steps (mid Lookahead cycle for the Rangers), load into a fresh optimizer over
    cloned params, and continue: the same trajectory as without the reload."""
    dtype = torch.float64
    a, b = make_params(dtype, device)
    pa = clone(a + b)
    first = getattr(HO, name)(groups(pa[:2], pa[2:], {"lr": 0.02}))
    for _ in range(4):
        for p in pa:
            p.grad = torch.randn_like(p)
        first.step()
    pb = clone(pa)
    second = getattr(HO, name)(groups(pb[:2], pb[2:], {}))
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert second.param_groups[1]["lr"] == 0.02
    run_pair(first, second, pa, pb, steps=6)
    assert_params_close(pa, pb, dtype)


def test_lookahead_lr_scheduler_and_zero_grad(device):
    p = [torch.randn(3, device=device, requires_grad=True)]
    opt = HO.Ranger(p, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p[0].grad = torch.ones(3, device=device)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == opt.optimizer.param_groups[0]["lr"] == 0.05
    opt.zero_grad()
    assert p[0].grad is None


@pytest.mark.parametrize("cls", ["Lamb", "Ralamb", "NovoGrad", "Ranger", "RangerLars"])
@pytest.mark.parametrize("kw,msg", [
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
])
def test_bad_hyperparameters_other_optimizers(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        getattr(HO, cls)([torch.zeros(3, requires_grad=True)], **kw)


def test_bad_lookahead_arguments():
    opt = HO.Adam([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="Invalid lookahead steps: 0"):
        HO.Lookahead(opt, k=0)
    with pytest.raises(ValueError, match="Invalid slow update rate: 1.5"):
        HO.Lookahead(opt, alpha=1.5)
    with pytest.raises(ValueError, match="Invalid max_grad_norm value: 0"):
        HO.Lamb([torch.zeros(3, requires_grad=True)], max_grad_norm=0)


# ------------------------------------------------------------------------- state_dict, schedulers, closure

def interop_roundtrip(ref_cls, our_cls, kw, device, first_ours: bool):
    """Run `first` for 5 steps, load its state_dict into a fresh `second` (on cloned params), and
    continue both copies for 5 steps against a reference that never switched."""
    dtype = torch.float64
    a, b = make_params(dtype, device)
    group_b = {"lr": 3e-3, "weight_decay": 0.01}
    base = clone(a + b)
    ref = ref_cls(groups(base[:2], base[2:], group_b), **kw)
    first_cls, second_cls = (our_cls, ref_cls) if first_ours else (ref_cls, our_cls)
    p1 = clone(a + b)
    first = first_cls(groups(p1[:2], p1[2:], group_b), **kw)
    run_pair(ref, first, base, p1, steps=5)
    p2 = clone(p1)
    second = second_cls(groups(p2[:2], p2[2:], {}), **kw)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    assert second.param_groups[1]["lr"] == 3e-3
    run_pair(ref, second, base, p2, steps=5)
    assert_params_close(base, p2, dtype)


@pytest.mark.parametrize("first_ours", [True, False], ids=["ours_to_torch", "torch_to_ours"])
@pytest.mark.parametrize("name,kw", [("Adam", {"amsgrad": True}), ("AdamW", {}), ("RAdam", {})])
def test_state_dict_interop_with_torch(device, name, kw, first_ours):
    interop_roundtrip(getattr(torch.optim, name), getattr(HO, name), kw, device, first_ours)


def test_state_dict_keys_match_torch(device):
    p = [torch.randn(4, 3, device=device, requires_grad=True)]
    ref, ours = torch.optim.Adam(clone(p), amsgrad=True), HO.Adam(clone(p), amsgrad=True)
    for opt in (ref, ours):
        opt.param_groups[0]["params"][0].grad = torch.ones(4, 3, device=device)
        opt.step()
    rs, os_ = ref.state_dict()["state"][0], ours.state_dict()["state"][0]
    assert set(rs) == set(os_) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert os_["step"].dtype == rs["step"].dtype and os_["step"].device == rs["step"].device


@pytest.mark.parametrize("cls", ["Adam", "RAdam"])
def test_lr_scheduler(device, cls):
    dtype = torch.float64
    a, b = make_params(dtype, device)
    ra, rb, oa, ob = clone(a), clone(b), clone(a), clone(b)
    ref = getattr(torch.optim, cls)(groups(ra, rb, {"lr": 0.05}), lr=0.1)
    ours = getattr(HO, cls)(groups(oa, ob, {"lr": 0.05}), lr=0.1)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5) for o in (ref, ours)]

    def on_step(t):
        for s in scheds:
            s.step()
        assert ours.param_groups[1]["lr"] == ref.param_groups[1]["lr"]

    run_pair(ref, ours, ra + rb, oa + ob, on_step=on_step)
    assert ours.param_groups[0]["lr"] == 0.1 * 0.5**4
    assert_params_close(ra + rb, oa + ob, dtype)


def test_closure_and_zero_grad(device):
    w = torch.randn(5, dtype=torch.float64, device=device, requires_grad=True)
    ref_w = w.detach().clone().requires_grad_()
    target = torch.randn(5, dtype=torch.float64, device=device)
    ours, ref = HO.Adam([w], lr=0.1), torch.optim.Adam([ref_w], lr=0.1)

    def closure_for(x, opt):
        def closure():
            opt.zero_grad()
            loss = ((x - target) ** 2).sum()
            loss.backward()
            return loss

        return closure

    for _ in range(10):
        l_ours = ours.step(closure_for(w, ours))
        l_ref = ref.step(closure_for(ref_w, ref))
        torch.testing.assert_close(l_ours, l_ref, **TOL[torch.float64])
    torch.testing.assert_close(w, ref_w, **TOL[torch.float64])
    ours.zero_grad(set_to_none=True)
    assert w.grad is None


# ---------------------------------------------------------------------------------------- bad input

BAD_HYPER = [
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    (dict(lr=torch.tensor([0.1, 0.2])), "Tensor lr must be 1-element"),
]


@pytest.mark.parametrize("cls", ["Adam", "AdamW", "RAdam"])
@pytest.mark.parametrize("kw,msg", BAD_HYPER)
def test_bad_hyperparameters_match_torch(cls, kw, msg):
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=msg) as ours:
        getattr(HO, cls)(p, **kw)
    with pytest.raises(ValueError) as ref:
        getattr(torch.optim, cls)(p, **kw)
    assert str(ours.value) == str(ref.value)


def _bad_param_groups(bad: str):
    """Two param groups; group 1 holds a param without a grad, then a good one, then the bad one
    (at position 2: the ops index their lists over the params with a grad, where it is at 1)."""
    good = [torch.zeros(4, requires_grad=True) for _ in range(3)]
    good[0].grad = good[2].grad = torch.ones(4)  # good[1] has none
    if bad == "integer param":
        p = torch.ones(3, dtype=torch.long)  # an integer tensor cannot require grad, but can be given one
        p.grad = torch.ones(3, dtype=torch.long)
    elif bad == "complex param":
        p = torch.ones(3, dtype=torch.complex64, requires_grad=True)
        p.grad = torch.ones(3, dtype=torch.complex64)
    else:  # a leaf view with gaps
        p = torch.zeros(3, 8)[:, ::2].requires_grad_()
        p.grad = torch.ones(3, 4)
    return [{"params": [good[0]]}, {"params": [good[1], good[2], p]}]


BAD_PARAM_CASES = {
    "integer param": "to be a float32, float64, float16 or bfloat16 tensor, but got Long",
    "complex param": "to be a float32, float64, float16 or bfloat16 tensor, but got ComplexFloat",
    "param with gaps": "to be dense",
}
OPTIMIZERS = ["Adam", "AdamW", "RAdam", "LAMB", "Lamb", "Ralamb", "NovoGrad", "Ranger", "RangerLars"]


@pytest.mark.parametrize("bad", list(BAD_PARAM_CASES))
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_bad_params_name_the_optimizer_and_the_param(name, bad):
    """A param the kernels refuse is named as torch.optim names things: the optimizer's class, the
    param group and the param's position in its "params" (not its index among the params with a
    grad, nor only the kernel op, which the message ends with)."""
    cls = "Lamb" if name == "LAMB" else name
    with pytest.raises(RuntimeError, match=rf"^hotkernels\.optim\.{cls}: param group 1: expected (the grad of )?"
                                           rf"'params\[2\]' {re.escape(BAD_PARAM_CASES[bad])}.* \(in .*hotkernels\.\w+\)$"):
        getattr(HO, name)(_bad_param_groups(bad)).step()


@pytest.mark.parametrize("name", ["Adam", "RAdam", "Lamb", "Ralamb", "NovoGrad"])
def test_bad_loaded_state_names_the_optimizer_and_the_entry(name):
    """State of another shape (a state_dict of another model) is named by its key and its param."""
    p = [torch.zeros(3, requires_grad=True), torch.zeros(5, requires_grad=True)]
    for x in p:
        x.grad = torch.ones_like(x)
    first = getattr(HO, name)(p)
    first.step()
    sd = copy.deepcopy(first.state_dict())
    sd["state"][1]["exp_avg"] = torch.zeros(4)
    second = getattr(HO, name)(clone(p))
    for x in second.param_groups[0]["params"]:
        x.grad = torch.ones_like(x)
    second.load_state_dict(sd)
    with pytest.raises(RuntimeError, match=rf"^hotkernels\.optim\.{name}: param group 0: expected state 'exp_avg' of "
                                           r"'params\[1\]' to have the shape of 'params\[1\]' \[5\], but got \[4\]"):
        second.step()


@pytest.mark.parametrize("name", ["Lookahead", "Ranger", "RangerLars"])
def test_bad_slow_weight_names_the_optimizer_and_the_param(name):
    """A param whose dtype changed after the Lookahead was built (its slow weight has the old one):
    the sync's error names the class, the param group and the param."""
    groups_ = [{"params": [torch.zeros(2, requires_grad=True)]},
               {"params": [torch.zeros(3, requires_grad=True), torch.zeros(4, requires_grad=True)]}]
    opt = HO.Lookahead(HO.Adam(groups_), k=1) if name == "Lookahead" else getattr(HO, name)(groups_, k=1)
    p = groups_[1]["params"][1]
    p.data = p.data.double()
    p.grad = torch.ones(4, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=rf"^hotkernels\.optim\.{name}: param group 1: expected the slow weight of "
                                           r"'params\[1\]' to have dtype Double like 'params\[1\]', but got Float "
                                           r"\(in hotkernels\.lookahead_sync_\)$"):
        opt.step()


def test_sparse_grad_rejected():
    p = torch.zeros(4, 2, requires_grad=True)
    p.grad = torch.zeros(4, 2).to_sparse()
    with pytest.raises(RuntimeError, match="Adam does not support sparse gradients"):
        HO.Adam([p]).step()


def test_op_rejects_bad_tensors():
    p, g = torch.zeros(3), torch.zeros(3)
    m, v, s = torch.zeros(3), torch.zeros(3), torch.tensor(0.0)
    step = torch.ops.hotkernels.adam_step_
    args = (0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    with pytest.raises(RuntimeError, match=r"hotkernels.adam_step_: expected 'params\[0\]' to be a float32, float64"):
        step([p.long()], [g.long()], [m.long()], [v.long()], [], [s], [], *args)
    with pytest.raises(RuntimeError, match=r"expected 'grads\[0\]' to have dtype"):
        step([p], [g.double()], [m], [v], [], [s], [], *args)
    with pytest.raises(RuntimeError, match=r"expected 'exp_avgs\[0\]' to have the shape"):
        step([p], [g], [torch.zeros(4)], [v], [], [s], [], *args)
    with pytest.raises(RuntimeError, match=r"expected 'exp_avg_sqs' to hold one tensor per param"):
        step([p], [g], [m], [], [], [s], [], *args)
    # State is updated in place, so it must share its param's strides (a grad is copied when not).
    with pytest.raises(RuntimeError, match=r"expected 'exp_avgs\[0\]' to have the strides"):
        step([torch.zeros(3, 4)], [torch.zeros(3, 4)], [torch.zeros(4, 3).t()], [torch.zeros(3, 4)], [], [s], [],
             *args)
    with pytest.raises(RuntimeError, match="state step"):
        step([p], [g], [m], [v], [], [torch.tensor(0)], [], *args)


# A step op checks everything before it writes anything: a bad tensor at the end of the list must not
# leave the counters of the params ahead of it incremented (nor any param, moment or layer moment
# written), or the retried step would run those params at a step count one ahead of their moments.
FAILED_STEP_CASES = [
    ("adam_step_", "int64 step"),
    ("radam_step_", "int64 step"),
    ("lamb_moments_", "int64 step"),
    ("novograd_step_", "int64 step"),
    ("novograd_step_", "layer moment shape"),
    ("adam_step_", "step on the device"),  # CUDA: counters on the CPU but the last on the GPU
    ("lamb_moments_", "grad_sq_norm on the CPU"),  # CUDA: params on the GPU
]


def _step_op_args(name, bad, device):
    shapes = [(4, 3), (5,), (2, 2)]
    rand = lambda: [torch.rand(s, device=device) for s in shapes]  # noqa: E731
    steps = [torch.tensor(2.0) for _ in shapes]  # counters on the CPU, as torch.optim keeps them
    layer = lambda: [torch.rand((), device=device) for _ in shapes]  # noqa: E731  NovoGrad's per-param v
    if bad == "int64 step":
        steps[-1] = torch.tensor(2)
    elif bad == "step on the device":
        steps[-1] = torch.tensor(2.0, device=device)
    v = layer()
    if bad == "layer moment shape":
        v[-1] = torch.rand(2, device=device)
    norms = torch.zeros(len(shapes), 2, 3, dtype=torch.float64, device=device)
    grad_sq_norm = torch.tensor(4.0, device="cpu" if bad == "grad_sq_norm on the CPU" else device)
    hyper = (0.1, 0.9, 0.999, 1e-8, 0.01)
    return {
        "adam_step_": (rand(), rand(), rand(), rand(), rand(), steps, [], *hyper, True, False, False),
        "radam_step_": (rand(), rand(), rand(), rand(), steps, [], *hyper, False, False),
        "lamb_moments_": (rand(), rand(), rand(), rand(), steps, [], norms, grad_sq_norm, 1.0, 0.9, 0.999, 1e-6, 0.01,
                          True, True, False),
        "novograd_step_": (rand(), rand(), rand(), v, layer(), steps, [], torch.rand(len(shapes), device=device), *hyper,
                           False, True),
    }[name]


@pytest.mark.parametrize("name,bad", FAILED_STEP_CASES,
                         ids=[f"{n}-{b}".replace(" ", "_") for n, b in FAILED_STEP_CASES])
def test_failed_step_leaves_state_untouched(device, name, bad):
    if device == "cpu" and bad in ("step on the device", "grad_sq_norm on the CPU"):
        pytest.skip("a case of params on the GPU")
    args = _step_op_args(name, bad, device)
    tensors = [t for a in args for t in (a if isinstance(a, list) else [a]) if isinstance(t, torch.Tensor)]
    before = [t.clone() for t in tensors]
    with pytest.raises(RuntimeError, match=f"hotkernels.{name}: expected"):
        getattr(torch.ops.hotkernels, name)(*args)
    for k, (t, b) in enumerate(zip(tensors, before)):
        assert torch.equal(t, b), f"tensor {k} of the arguments was written by a step that raised"


def test_lamb_apply_checks_its_state_steps(device):
    """lamb_apply_ reads the counters on the host: a counter of another dtype (read as garbage before)
    or on the GPU (a device pointer dereferenced on the host before: a crash) is refused by name."""
    shapes = [(4, 3), (5,)]
    ps, ms, vs = ([torch.rand(s, device=device) for s in shapes] for _ in range(3))
    norms = torch.ones(len(shapes), 2, 3, dtype=torch.float64, device=device)
    bad_steps = [torch.tensor(1)] + ([torch.tensor(1.0, device=device)] if device == "cuda" else [])
    for bad in bad_steps:
        steps = [torch.tensor(1.0), bad]
        with pytest.raises(RuntimeError, match=r"hotkernels.lamb_apply_: expected each state step to be a one-element "
                                               r"float32 or float64 CPU tensor, but 'state_steps\[1\]'"):
            torch.ops.hotkernels.lamb_apply_(ps, ms, vs, steps, [], norms, 0.1, 0.9, 0.999, 1e-6, 0.01, True, True,
                                             False, True, False)


def test_mixed_devices_rejected_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    p = [torch.zeros(3, requires_grad=True), torch.zeros(3, device="cuda", requires_grad=True)]
    for x in p:
        x.grad = torch.ones_like(x)
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device"):
        HO.Adam(p).step()


def _opcheck_args(name):
    shapes = [(5, 3), (7,)]
    lists = lambda: [torch.randn(s, dtype=torch.float64) for s in shapes]  # noqa: E731
    zeros = lambda: [torch.zeros(s, dtype=torch.float64) for s in shapes]  # noqa: E731
    steps = lambda: [torch.tensor(0.0) for _ in shapes]  # noqa: E731
    scalars = lambda: [torch.zeros((), dtype=torch.float64) for _ in shapes]  # noqa: E731
    norms = torch.zeros(len(shapes), 2, 3, dtype=torch.float64)
    return {
        "adam_step_": (lists(), lists(), zeros(), zeros(), zeros(), steps(), [], 0.1, 0.9, 0.999, 1e-8, 0.01, True,
                       False, False),
        "radam_step_": (lists(), lists(), zeros(), zeros(), steps(), [], 0.1, 0.9, 0.999, 1e-8, 0.01, True, False),
        "multi_tensor_sq_norms": (lists(),),
        "lamb_moments_": (lists(), lists(), zeros(), zeros(), steps(), [], norms,
                          torch.tensor(4.0, dtype=torch.float64), 1.0, 0.9, 0.999, 1e-6, 0.01, True, True, False),
        "lamb_apply_": (lists(), zeros(), zeros(), [torch.tensor(1.0) for _ in shapes], [], norms.clone() + 1, 0.1,
                        0.9, 0.999, 1e-6, 0.01, True, True, False, True, False),
        "novograd_step_": (lists(), lists(), zeros(), scalars(), scalars(), steps(), [],
                           torch.ones(len(shapes), dtype=torch.float64), 0.1, 0.95, 0.5, 1e-8, 0.0, False, True),
        "lookahead_sync_": (lists(), lists(), [], 0.5),
    }[name]


@pytest.mark.parametrize("name", ["adam_step_", "radam_step_", "multi_tensor_sq_norms", "lamb_moments_", "lamb_apply_",
                                  "novograd_step_", "lookahead_sync_"])
def test_opcheck(name):
    torch.library.opcheck(getattr(torch.ops.hotkernels, name).default, _opcheck_args(name),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("name,kw,ops", [
    ("Adam", {"amsgrad": True, "weight_decay": 0.1}, ["hotkernels.adam_step_.default"]),
    ("RAdam", {"decoupled_weight_decay": True, "weight_decay": 0.1}, ["hotkernels.radam_step_.default"]),
    ("Lamb", {}, ["hotkernels.lamb_moments_.default", "hotkernels.lamb_apply_.default"]),
])
def test_torch_compile_inductor_matches_torch(device, name, kw, ops):
    """Our step compiled by torch.compile's default backend (Inductor, fullgraph=True) against
    torch.optim's eager step (RefLamb's for LAMB, which torch lacks), over 7 steps (RAdam rectifies
    from step 6); the generated code must call our ops."""
    from torch._inductor.utils import run_and_get_code

    a, b = make_params(torch.float64, device)
    r, o = clone(a + b), clone(a + b)
    ref = (RefLamb if name == "Lamb" else getattr(torch.optim, name))(r, lr=0.01, **kw)
    ours = getattr(HO, name)(o, lr=0.01, **kw)
    torch._dynamo.reset()
    compiled = torch.compile(ours.step, fullgraph=True)
    code = []
    for _ in range(7):
        set_grads(r, o, 0)
        ref.step()
        code += run_and_get_code(compiled)[1]
    assert_params_close(r, o, torch.float64)
    generated = "\n".join(code)
    assert all(op in generated for op in ops), [op for op in ops if op not in generated]


HAS_CUDA = torch.cuda.is_available() and hotkernels._library.with_cuda
CUDA_ONLY = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and hotkernels built with CUDA")


def _multi_tensor_limits() -> dict[str, int]:
    """kMaxTensors, kMaxBlocks and kChunk of csrc/cuda/multi_tensor.cuh (one launch of the CUDA
    multi-tensor apply takes at most kMaxTensors tensors and kMaxBlocks chunks of kChunk elements),
    read from the source so that the tests below cross them whatever they become."""
    text = (pathlib.Path(__file__).parents[1] / "csrc" / "cuda" / "multi_tensor.cuh").read_text()
    return {name: int(re.search(rf"\b{name} = (\d+);", text).group(1))
            for name in ("kMaxTensors", "kMaxBlocks", "kChunk")}


@pytest.mark.parametrize("dtype,tol", [(torch.float16, dict(rtol=2e-3, atol=2e-3)),
                                       (torch.bfloat16, dict(rtol=1.6e-2, atol=1.6e-2))])
def test_half_params_compute_in_float(device, dtype, tol):
    """float16/bfloat16 params and state, float math: against torch's fused Adam (also float math,
    state in the param's dtype, on the CPU as on CUDA), at most a couple of units of the half type
    apart after 5 steps."""
    ps = [torch.randn(1000, 33, device=device).to(dtype), torch.randn(77, device=device).to(dtype)]
    r, o = clone(ps), clone(ps)
    ref, ours = torch.optim.Adam(r, lr=1e-2, fused=True), HO.Adam(o, lr=1e-2)
    run_pair(ref, ours, r, o, steps=5, skip=None)
    for a, b in zip(r, o):
        torch.testing.assert_close(b.float(), a.float(), **tol)


HALF_CASES = {
    "Adam": lambda ps: HO.Adam(ps, lr=1e-2, amsgrad=True),
    "AdamW": lambda ps: HO.AdamW(ps, lr=1e-2),
    "RAdam": lambda ps: HO.RAdam(ps, lr=1e-2, betas=(0.9, 0.99)),
    "Lamb": lambda ps: HO.Lamb(ps, lr=1e-2, max_grad_norm=100.0),  # the norm is computed, but ~45: no clipping
    "Ralamb": lambda ps: HO.Ralamb(ps, lr=1e-2, weight_decay=0.01),
    "NovoGrad": lambda ps: HO.NovoGrad(ps, lr=1e-2, betas=(0.9, 0.5), amsgrad=True, grad_averaging=True),
    "Lookahead": lambda ps: HO.Lookahead(HO.Adam(ps, lr=1e-2), k=3, alpha=0.5),
    "Ranger": lambda ps: HO.Ranger(ps, lr=1e-2),
    "RangerLars": lambda ps: HO.RangerLars(ps, lr=1e-2),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", list(HALF_CASES))
def test_half_params_match_float32(device, name, dtype):
    """Every optimizer on float16/bfloat16 params and state against itself on float32
    copies of the same params and gradients (float32 is checked against torch and the references
    above). The half kernels compute in float32 and round p and the state once per step, so after
    `steps` steps |p_half − p_float| <= steps·u·|p| (the rounding of p) plus the rounded moments'
    share of the updates (relative ~10u of updates of ~lr, lr = 1e-2): within (steps + 1)·u·(|p| + 1),
    u the unit roundoff (2^-11 for float16, 2^-8 for bfloat16). (Emulated on the CPU, float32 steps
    with p and the state rounded to the half type after each, 5 seeds: at most 0.45 of that bound.) Gradient magnitudes in [0.5, 2]
    keep Adam's v = (1 − β₂)g² out of float16's subnormals (below 6.1e-5, where rounding is no
    longer relative; hence no L2 weight decay, which adds λθ to g, and no LAMB clipping, which
    scales g down by ‖g‖ ≈ 45); NovoGrad's layer v = ‖g‖² (at most ~4000 here) stays below
    float16's 65504.
    7 steps: past RAdam's rectification threshold (step 6) and Ranger's Lookahead sync (k = 6)."""
    steps, u = 7, (2.0**-11 if dtype == torch.float16 else 2.0**-8)
    shapes = [(40, 25), (77,), (3, 5, 7), ()]
    half = [torch.randn(s, device=device).to(dtype) for s in shapes]
    ph, pf = clone(half), clone([p.float() for p in half])
    opt_h, opt_f = HALF_CASES[name](ph), HALF_CASES[name](pf)
    for _ in range(steps):
        for a, b in zip(ph, pf):
            g = (torch.rand(a.shape, device=device) * 1.5 + 0.5) * (torch.randint(0, 2, a.shape, device=device) * 2 - 1)
            a.grad, b.grad = g.to(dtype), g.to(dtype).float()
        opt_h.step()
        opt_f.step()
    for a, b in zip(ph, pf):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, rtol=(steps + 1) * u, atol=(steps + 1) * u)
    for p in ph:  # the state in the param's dtype, as torch's fused Adam keeps it
        assert {key: t.dtype for key, t in opt_h.state[p].items() if key != "step"} == \
            {key: dtype for key in opt_h.state[p] if key != "step"}


@CUDA_ONLY
@pytest.mark.parametrize("many", [False, True], ids=["2_params", "past_kMaxTensors_params"])
@pytest.mark.parametrize("cls,kw", [("Adam", {"amsgrad": True}), ("RAdam", {})])
def test_capturable_matches_torch_and_replays_in_cuda_graph(cls, kw, many):
    """capturable=True: the step counters on the GPU; eager steps match torch's optimizer, and a
    step captured in a CUDA graph and replayed gives the same trajectory as eager steps. The
    reference is torch's non-capturable optimizer, which computes the per-step scalars in double on
    the host as our kernels do on the device (torch's capturable RAdam computes ρ_t in float32 on the
    device, ~0.5% off around the rectification threshold). With more params than one launch takes
    (kMaxTensors), the counters and the updates run in several launches."""
    dtype = torch.float32
    n = _multi_tensor_limits()["kMaxTensors"] + 44 if many else 2
    ps = [torch.randn(300, 7, device="cuda")] + [torch.randn(5 + i % 17, device="cuda") for i in range(n - 1)]
    grads = [torch.randn_like(p) for p in ps]
    ref_p, eager_p, graph_p = clone(ps), clone(ps), clone(ps)
    ref = getattr(torch.optim, cls)(ref_p, lr=0.01, **kw)
    eager = getattr(HO, cls)(eager_p, lr=0.01, capturable=True, **kw)
    graphed = getattr(HO, cls)(graph_p, lr=0.01, capturable=True, **kw)
    for group in (ref_p, eager_p, graph_p):
        for p, g in zip(group, grads):
            p.grad = g.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        graphed.step()  # warm-up outside the graph: creates the state
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        graphed.step()
    for opt in (ref, eager):
        opt.step()
    for _ in range(8):  # capturing does not run the step; each replay does
        graph.replay()
        ref.step()
        eager.step()
    # graphed: warm-up + 8 replays = 9 steps, like ref and eager (RAdam rectifies from step 6).
    assert eager.state[eager_p[0]]["step"].device.type == "cuda"
    assert all(float(graphed.state[p]["step"]) == 9 for p in graph_p)
    assert all(float(eager.state[p]["step"]) == 9 for p in eager_p)
    for r, e, g in zip(ref_p, eager_p, graph_p):
        torch.testing.assert_close(e, r, **TOL[dtype])
        torch.testing.assert_close(g, e, **TOL[dtype])


def _launch_crossing_tensors() -> list[torch.Tensor]:
    """float32 tensors on the GPU whose one bucket takes several launches through every branch of
    for_each_launch (csrc/cuda/multi_tensor.cuh): four tensors that fill kMaxBlocks chunks exactly
    and end with the launch; more than kMaxTensors small tensors; a tensor of kMaxBlocks chunks and
    a partial one, which continues into the next launches (in slot 0); small tensors after it; an
    empty tensor (skipped). ~34M elements."""
    lim = _multi_tensor_limits()
    quarter = lim["kMaxBlocks"] // 4 * lim["kChunk"]
    sizes = [quarter] * 4 + [1 + 37 * i % 300 for i in range(lim["kMaxTensors"] + 44)]
    sizes += [lim["kMaxBlocks"] * lim["kChunk"] + 5, 0, 3, lim["kChunk"] + 1]
    return [torch.randn(n, device="cuda") for n in sizes]


@CUDA_ONLY
def test_multi_tensor_apply_past_one_launch_cuda():
    """Adam (amsgrad: five operands), the squared norms and the Lookahead sync over a bucket that
    takes several launches (_launch_crossing_tensors): every element of every tensor updated once,
    as torch does."""
    ps = _launch_crossing_tensors()
    r, o = clone(ps), clone(ps)
    ref, ours = torch.optim.Adam(r, lr=0.01, amsgrad=True), HO.Adam(o, lr=0.01, amsgrad=True)
    run_pair(ref, ours, r, o, steps=2, skip=None, check_grads=False)
    assert_params_close(r, o, torch.float32)
    assert_state_close(ref, ours, r, o, torch.float32)
    sq = torch.ops.hotkernels.multi_tensor_sq_norms(ps)
    # float sums per 16k-element chunk, added in double: relative error ~ a few float32 ulp
    torch.testing.assert_close(sq, torch.stack([(p.double() ** 2).sum() for p in ps]).float(), rtol=1e-5, atol=0)
    fast, slow = [p.clone() for p in ps], [torch.randn_like(p) for p in ps]
    want = [s + 0.3 * (f - s) for f, s in zip(fast, slow)]
    torch.ops.hotkernels.lookahead_sync_(fast, slow, [], 0.3)
    for f, s, w in zip(fast, slow, want):
        torch.testing.assert_close(s, w, **TOL[torch.float32])
        assert torch.equal(f, s)


@CUDA_ONLY
@pytest.mark.parametrize("name", ["Lamb", "NovoGrad"])
def test_norm_optimizers_past_one_launch_cuda(name):
    """LAMB's per-tensor norms and trust ratios and NovoGrad's layer moments (one thread per tensor,
    kMaxTensors a launch) over a bucket that takes several launches, against the references."""
    ps = _launch_crossing_tensors()
    ref_cls, our_cls = {"Lamb": (RefLamb, HO.Lamb), "NovoGrad": (RefNovoGrad, HO.NovoGrad)}[name]
    r, o = clone(ps), clone(ps)
    ref, ours = ref_cls(r, lr=1e-2, weight_decay=0.01), our_cls(o, lr=1e-2, weight_decay=0.01)
    run_pair(ref, ours, r, o, steps=2, skip=None, check_grads=False)
    assert_params_close(r, o, torch.float32)


def test_every_cpu_instruction_set(cpu_isa):
    """Each SIMD path this CPU can run (capped by HOTKERNELS_CPU_ISA): Adam (amsgrad), RAdam (across
    its threshold), the norm reduction, LAMB's float64 trust ratio of tiny and huge norms and the
    Lookahead sync, on sizes with vector tails."""
    code = (
        "import torch, hotkernels, hotkernels.optim as HO\n"
        "from tests.test_optim import assert_float32_trajectory\n"
        "import tests.test_optim as T\n"
        "for name in T.LAMB_FAMILY:\n"
        "    T.test_trust_ratio_of_tiny_norms_mixed_with_normal_ones('cpu', name)\n"
        "    T.test_trust_ratio_of_huge_norms('cpu', name)\n"
        "for dt, tol in [(torch.float64, dict(rtol=1e-12, atol=1e-14)), (torch.float32, None)]:\n"
        "    ps = [torch.randn(40_007, dtype=dt), torch.randn(13, dtype=dt)]\n"
        "    for ref_cls, our_cls, kw in [(torch.optim.Adam, HO.Adam, dict(amsgrad=True, weight_decay=0.1)),\n"
        "                                 (torch.optim.RAdam, HO.RAdam, dict(weight_decay=0.1))]:\n"
        "        r = [p.clone().requires_grad_() for p in ps]; o = [p.clone().requires_grad_() for p in ps]\n"
        "        e = [p.detach().double().clone().requires_grad_() for p in ps]  # float32: the float64 run (assert_float32_trajectory)\n"
        "        ro, oo, eo = ref_cls(r, lr=0.01, **kw), our_cls(o, lr=0.01, **kw), ref_cls(e, lr=0.01, **kw)\n"
        "        for _ in range(8):\n"
        "            for a, b, c in zip(r, o, e):\n"
        "                a.grad = torch.randn_like(a); b.grad = a.grad.clone(); c.grad = a.grad.double()\n"
        "            ro.step(); oo.step(); eo.step()\n"
        "        for a, b, c in zip(r, o, e):\n"
        "            if tol: torch.testing.assert_close(b, a, **tol)\n"
        "            else: assert_float32_trajectory(b, a, c, 8)\n"
        "    sq = torch.ops.hotkernels.multi_tensor_sq_norms(ps)\n"
        "    exact = torch.stack([(p.double() ** 2).sum() for p in ps])\n"
        "    if tol: torch.testing.assert_close(sq, exact.to(sq.dtype), rtol=1e-5, atol=0)\n"
        "    else:  # float32 sums of numel() squares: the reduction bound\n"
        "        from tests.conftest import assert_within_reduction_bound\n"
        "        for i, p in enumerate(ps):\n"
        "            assert_within_reduction_bound(sq[i], exact[i], (p.double() ** 4).sum(), p.numel(), 'sq norm')\n"
        "    fast = [p.clone() for p in ps]; slow = [torch.randn_like(p) for p in ps]\n"
        "    fd, sd = [f.double() for f in fast], [s.double() for s in slow]\n"
        "    want = [s + 0.3 * (f - s) for f, s in zip(fd, sd)]\n"
        "    torch.ops.hotkernels.lookahead_sync_(fast, slow, [], 0.3)\n"
        "    for f, s, w, f0, s0 in zip(fast, slow, want, fd, sd):\n"
        "        assert torch.equal(f, s)\n"
        "        if tol: torch.testing.assert_close(s, w.to(dt), **tol)\n"
        "        else:  # s + α(f − s): three roundings (and α's own), each <= u of |s| + α|f − s| + α|f| + α|s|\n"
        "            terms = w.abs() + 0.3 * ((f0 - s0).abs() + f0.abs() + s0.abs())\n"
        "            assert ((s.double() - w).abs() <= 4 * 2.0**-24 * terms).all()\n"
    )
    run_with_isa(cpu_isa, code)


def test_channels_last_params(device):
    """Dense params in any memory format (here a channels_last conv weight): the state and the grad
    share its strides, and the step walks them as one flat array."""
    w = torch.randn(8, 3, 5, 5, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    r, o = clone([w]), clone([w])
    ref, ours = torch.optim.Adam(r, lr=0.01), HO.Adam(o, lr=0.01)
    for _ in range(5):
        g = torch.randn_like(w)  # randn_like keeps channels_last
        r[0].grad, o[0].grad = g.clone(), g.clone()
        ref.step()
        ours.step()
    assert ours.state[o[0]]["exp_avg"].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(o[0], r[0], **TOL[torch.float64])
