"""Property-based parity of the fused optimizers (hypothesis): random param groups (0-d, one-element
and empty params among others, dense non-contiguous and channels_last layouts, zero gradients,
gradients missing at some steps or laid out unlike their param), random hyperparameters over their
valid ranges, a few steps. Params and state are compared in float64 with torch.optim (Adam, AdamW,
RAdam) or with the plain-PyTorch references of tests/test_optim.py written from the papers'
formulas (LAMB, Ralamb, NovoGrad, Lookahead). Hypothesis profiles: tests/conftest.py (bounded for
CI; HOTKERNELS_HYPOTHESIS=long for a longer search)."""

from __future__ import annotations

import torch
from hypothesis import example, given
from hypothesis import strategies as st

import hotkernels.optim as HO
from tests.conftest import assert_same_nans
from tests.test_optim import TOL, RefLamb, RefLookahead, RefNovoGrad, RefRalamb

F64 = TOL[torch.float64]
GRAD_KINDS = ["randn", "randn", "randn", "zero", "none", "other_layout"]


@st.composite
def param(draw) -> torch.Tensor:
    """A float64 leaf of random shape (up to 4-d; sometimes 0-d, one-element or empty), scale and
    dense layout: contiguous, a permutation of a contiguous tensor's dims, or channels_last."""
    shape = draw(st.lists(st.integers(1, 5), max_size=4))
    if shape and draw(st.integers(0, 9)) == 0:
        shape[draw(st.integers(0, len(shape) - 1))] = 0
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    t = torch.randn(shape, dtype=torch.float64, generator=gen) * draw(st.sampled_from([1.0, 1e-3, 10.0]))
    layout = draw(st.sampled_from(["contiguous", "permuted", "channels_last"]))
    if layout == "permuted" and t.dim() > 1:
        t = t.permute(*draw(st.permutations(range(t.dim()))))
    elif layout == "channels_last" and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t


@st.composite
def setup(draw, hyper: st.SearchStrategy[dict], max_steps: int):
    """(param groups as lists of tensors, per-group hyperparameter overrides, grad schedule, seed):
    one or two groups of one to three params; the second group overrides some hyperparameters; the
    schedule gives each param's gradient kind at each step."""
    groups = draw(st.lists(st.lists(param(), min_size=1, max_size=3), min_size=1, max_size=2))
    overrides = [{}] + [draw(hyper) for _ in groups[1:]]
    overrides = [{k: v for k, v in o.items() if draw(st.booleans())} for o in overrides]
    n = sum(len(g) for g in groups)
    steps = draw(st.integers(1, max_steps))
    schedule = draw(st.lists(st.lists(st.sampled_from(GRAD_KINDS), min_size=n, max_size=n), min_size=steps,
                             max_size=steps))
    return groups, overrides, schedule, draw(st.integers(0, 2**31))


def lrs():
    return st.one_of(st.just(0.0), st.floats(1e-4, 0.5))


def betas():
    return st.tuples(st.floats(0.0, 0.99), st.floats(0.0, 0.999))


def epss():
    return st.one_of(st.sampled_from([0.0, 1e-8, 1e-3]), st.floats(1e-12, 0.1))


def weight_decays():
    return st.one_of(st.just(0.0), st.floats(0.0, 0.5))


def leaves(groups):
    return [[p.detach().clone().requires_grad_() for p in g] for g in groups]


def param_groups(groups, overrides):
    return [{"params": g, **o} for g, o in zip(groups, overrides)]


def flat(groups):
    return [p for g in groups for p in g]


def run(ref, ours, ref_params, our_params, schedule, seed):
    """The same gradients for both at every step, per the schedule: random, all zero, none, or random
    but laid out unlike the param (contiguous, or transposed for a contiguous param)."""
    gen = torch.Generator().manual_seed(seed)
    for kinds in schedule:
        for r, o, kind in zip(ref_params, our_params, kinds):
            if kind == "none":
                r.grad = o.grad = None
                continue
            g = torch.zeros_like(r) if kind == "zero" else torch.randn(r.shape, dtype=r.dtype, generator=gen)
            if kind == "other_layout" and r.is_contiguous() and r.dim() > 1:
                g = g.transpose(0, 1).contiguous().transpose(0, 1)
            elif kind != "other_layout":
                g = torch.empty_like(r).copy_(g)  # the param's strides, as autograd makes them
            r.grad, o.grad = g.clone(), g.clone()
        ref.step()
        ours.step()


def step_both(s, make_ref, make_ours):
    """The reference and our optimizer, each built by its `make_*` from its own copy of the drawn
    param groups, stepped through the drawn schedule; returns (ref params, our params, ref, ours)."""
    groups, overrides, schedule, seed = s
    ref_groups, our_groups = leaves(groups), leaves(groups)
    ref, ours = make_ref(param_groups(ref_groups, overrides)), make_ours(param_groups(our_groups, overrides))
    run(ref, ours, flat(ref_groups), flat(our_groups), schedule, seed)
    return flat(ref_groups), flat(our_groups), ref, ours


def close(ours, ref):
    assert_same_nans(ours.detach(), ref.detach(), "params or state", **F64)


def assert_match(ref_params, our_params, ref_state, our_state, keys: dict[str, str]):
    """Params, then each state entry (ours under `keys`' key, the reference's under its value;
    0-dim tensors and Python numbers alike)."""
    for r, o in zip(ref_params, our_params):
        close(o, r)  # NaN where the reference has NaN (a 0/0 when ε = 0 and the gradients so far are zero)
        # The state is compared whatever the params hold: like torch, ours skips the weight decay term
        # when λ = 0, so a NaN param leaves the moments as torch leaves them (tests/test_optim.py,
        # test_nan_param_keeps_moments_finite_as_torch).
        rs, os_ = ref_state[r], our_state[o]
        assert bool(rs) == bool(os_), (dict(rs), dict(os_))
        if not rs:
            continue
        assert set(os_) == set(keys), set(os_)
        for ours_key, ref_key in keys.items():
            want = rs[ref_key]
            got = os_[ours_key]
            if ours_key == "step":
                assert float(got) == float(want)
            else:
                close(got, want if isinstance(want, torch.Tensor) else torch.tensor(want, dtype=got.dtype))


def same_keys(*keys: str) -> dict[str, str]:
    return {k: k for k in keys}


# ------------------------------------------------------------------------- against torch.optim

def adam_hyper():
    return st.fixed_dictionaries({"lr": lrs(), "betas": betas(), "eps": epss(), "weight_decay": weight_decays()})


# ε = 0 and a zero first gradient: 0/0 makes the param NaN, then the state must stay torch's.
NAN_PARAM = ([[torch.randn(3, 4, dtype=torch.float64)]], [{}], [["zero"], ["randn"], ["randn"]], 0)


@given(setup(adam_hyper(), max_steps=5), adam_hyper(), st.sampled_from(["Adam", "AdamW"]), st.booleans(),
       st.booleans(), st.booleans(), st.booleans())
@example(NAN_PARAM, {"lr": 0.1, "betas": (0.9, 0.999), "eps": 0.0, "weight_decay": 0.0}, "Adam", False, False, False, False)
def test_adam(s, kw, cls, amsgrad, maximize, decoupled, tensor_lr):
    kw = dict(kw, amsgrad=amsgrad, maximize=maximize)
    if cls == "Adam":
        kw["decoupled_weight_decay"] = decoupled
    if tensor_lr:
        kw["lr"] = torch.tensor(kw["lr"], dtype=torch.float64)
    rp, op, ref, ours = step_both(s, lambda g: getattr(torch.optim, cls)(g, **kw), lambda g: getattr(HO, cls)(g, **kw))
    keys = ["step", "exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if amsgrad else [])
    assert_match(rp, op, ref.state, ours.state, same_keys(*keys))


# RAdam's rectification first applies at step 6 for the usual β₂: up to 8 steps cover both regimes.
@given(setup(adam_hyper(), max_steps=8), adam_hyper(), st.booleans(), st.booleans())
def test_radam(s, kw, decoupled, maximize):
    kw = dict(kw, decoupled_weight_decay=decoupled, maximize=maximize)
    rp, op, ref, ours = step_both(s, lambda g: torch.optim.RAdam(g, **kw), lambda g: HO.RAdam(g, **kw))
    assert_match(rp, op, ref.state, ours.state, same_keys("step", "exp_avg", "exp_avg_sq"))


# --------------------------------------------------- against the references of tests/test_optim.py

LAMB_KEYS = {"step": "step", "exp_avg": "m", "exp_avg_sq": "v"}


def lamb_hyper():
    return st.fixed_dictionaries({"lr": lrs(), "betas": betas(), "eps": epss(), "weight_decay": weight_decays(),
                                  "bias_correction": st.booleans(), "grad_averaging": st.booleans(),
                                  "trust_clip": st.booleans(), "always_adapt": st.booleans()})


@given(setup(lamb_hyper(), max_steps=5), lamb_hyper(), st.one_of(st.none(), st.floats(0.1, 10.0)))
def test_lamb(s, kw, max_grad_norm):
    rp, op, ref, ours = step_both(s, lambda g: RefLamb(g, max_grad_norm=max_grad_norm, **kw),
                                  lambda g: HO.Lamb(g, max_grad_norm=max_grad_norm, **kw))
    assert_match(rp, op, ref.state, ours.state, LAMB_KEYS)


@given(setup(adam_hyper(), max_steps=8), adam_hyper())
def test_ralamb(s, kw):
    rp, op, ref, ours = step_both(s, lambda g: RefRalamb(g, **kw), lambda g: HO.Ralamb(g, **kw))
    assert_match(rp, op, ref.state, ours.state, LAMB_KEYS)


def novograd_hyper():
    return st.fixed_dictionaries({"lr": lrs(), "betas": betas(), "eps": epss(), "weight_decay": weight_decays(),
                                  "grad_averaging": st.booleans()})


@given(setup(novograd_hyper(), max_steps=5), novograd_hyper(), st.booleans())
def test_novograd(s, kw, amsgrad):
    rp, op, ref, ours = step_both(s, lambda g: RefNovoGrad(g, amsgrad=amsgrad, **kw),
                                  lambda g: HO.NovoGrad(g, amsgrad=amsgrad, **kw))
    keys = {"exp_avg": "m", "exp_avg_sq": "v", **({"max_exp_avg_sq": "vmax"} if amsgrad else {})}
    # The reference keeps no step count: compare ours with the number of steps each param had a grad.
    schedule = s[2]
    steps = [sum(kinds[i] != "none" for kinds in schedule) for i in range(len(op))]
    for p, n in zip(op, steps):
        assert float(ours.state[p].pop("step", 0)) == n
    assert_match(rp, op, ref.state, ours.state, keys)


def lookahead_args():
    return st.fixed_dictionaries({"k": st.integers(1, 4), "alpha": st.floats(0.0, 1.0)})


@given(setup(adam_hyper(), max_steps=9), adam_hyper(), lookahead_args(), st.sampled_from(["Adam", "RAdam"]))
def test_lookahead(s, kw, la, inner):
    rp, op, ref, ours = step_both(s, lambda g: RefLookahead(getattr(torch.optim, inner)(g, **kw), **la),
                                  lambda g: HO.Lookahead(getattr(HO, inner)(g, **kw), **la))
    assert_match(rp, op, ref.inner.state, ours.state, same_keys("step", "exp_avg", "exp_avg_sq"))
    for s_ours, s_ref in zip(ours.slow, ref.slow):
        close(s_ours, s_ref)


# β₁ = 2.2e-194, ε = 0 and a zero gradient at step 2: u ~1e-194, whose float64 Σu² is 0 unless scaled
# (csrc/math/optim.h, SqSums); a long search's find, once at trust ratio 1 instead of ~1e194.
TINY_STEP = ([[torch.randn(3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]], [{}],
             [["randn", "randn"], ["zero", "zero"], ["randn", "randn"]], 0)


@given(setup(adam_hyper(), max_steps=9), adam_hyper(), lookahead_args(), st.sampled_from(["Ranger", "RangerLars"]))
@example(TINY_STEP, {"lr": 0.1, "betas": (2.2e-194, 0.999), "eps": 0.0, "weight_decay": 0.0}, {"k": 2, "alpha": 0.5},
         "RangerLars")
def test_ranger(s, kw, la, cls):
    inner = torch.optim.RAdam if cls == "Ranger" else RefRalamb
    rp, op, ref, ours = step_both(s, lambda g: RefLookahead(inner(g, **kw), **la),
                                  lambda g: getattr(HO, cls)(g, **kw, **la))
    assert_match(rp, op, ref.inner.state, ours.state,
                 same_keys("step", "exp_avg", "exp_avg_sq") if cls == "Ranger" else LAMB_KEYS)
    for s_ours, s_ref in zip(ours.slow, ref.slow):
        close(s_ours, s_ref)
