"""Fused optimizers: multi-step trajectories against torch.optim (Adam, AdamW, RAdam) and against
plain-PyTorch references written here from the papers' formulas (LAMB, Ralamb, NovoGrad,
Lookahead); state_dict round trips and torch.optim interop; LR schedulers; closures; bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import hotkernels.optim as HO

# float64: the same formulas in another association order, a few ulp apart per step. float32: a few
# float32 ulp per step, compounded over the trajectory's steps.
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=2e-5, atol=2e-6)}
STEPS = 12
SHAPES_A = [(33, 17), (100,)]
SHAPES_B = [(7, 5, 3), ()]  # a 0-dim param too


def make_params(dtype, device):
    a = [torch.randn(s, dtype=dtype, device=device) for s in SHAPES_A]
    b = [torch.randn(s, dtype=dtype, device=device) for s in SHAPES_B]
    return a, b


def clone(ps):
    return [p.detach().clone().requires_grad_() for p in ps]


def groups(a, b, group_b):
    return [{"params": a}, {"params": b, **group_b}]


def set_grads(ref_params, our_params, step, skip=None):
    """Fresh gradients, the same values in separate tensors for the reference and for ours. The
    param at index `skip` gets none at step 3 (so its step count falls behind the others)."""
    for i, (r, o) in enumerate(zip(ref_params, our_params)):
        if skip == i and step == 3:
            r.grad = o.grad = None
            continue
        g = torch.randn_like(r)
        r.grad = g.clone()
        o.grad = g.clone()


def run_pair(ref_opt, our_opt, ref_params, our_params, steps=STEPS, skip=1, check_grads=True, on_step=None):
    for t in range(steps):
        set_grads(ref_params, our_params, t, skip)
        before = [None if p.grad is None else p.grad.clone() for p in our_params]
        ref_opt.step()
        our_opt.step()
        if check_grads:  # never written into p.grad
            for p, g in zip(our_params, before):
                assert (p.grad is None and g is None) or torch.equal(p.grad, g)
        if on_step is not None:
            on_step(t)


def assert_params_close(ref_params, our_params, dtype):
    for r, o in zip(ref_params, our_params):
        torch.testing.assert_close(o, r, **TOL[dtype])


def assert_state_close(ref_opt, our_opt, ref_params, our_params, dtype):
    for r, o in zip(ref_params, our_params):
        rs, os_ = ref_opt.state[r], our_opt.state[o]
        assert set(rs) == set(os_), (set(rs), set(os_))
        for key in rs:
            if key == "step":
                assert float(rs[key]) == float(os_[key])
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
    ra, rb, oa, ob = clone(a), clone(b), clone(a), clone(b)
    ref = getattr(torch.optim, cls)(groups(ra, rb, group_b), **kw)
    ours = getattr(HO, cls)(groups(oa, ob, group_b), **kw)
    run_pair(ref, ours, ra + rb, oa + ob)
    assert_params_close(ra + rb, oa + ob, dtype)
    assert_state_close(ref, ours, ra + rb, oa + ob, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_tensor_lr(device, dtype):
    a, b = make_params(dtype, device)
    ra, rb, oa, ob = clone(a), clone(b), clone(a), clone(b)
    ref = torch.optim.Adam(groups(ra, rb, {"lr": tensor_lr(dtype) / 4}), lr=tensor_lr(dtype), amsgrad=True)
    ours = HO.Adam(groups(oa, ob, {"lr": tensor_lr(dtype) / 4}), lr=tensor_lr(dtype), amsgrad=True)
    run_pair(ref, ours, ra + rb, oa + ob)
    assert_params_close(ra + rb, oa + ob, dtype)


def test_adam_mixed_dtypes_in_one_group(device):
    ps = [torch.randn(40, 3, dtype=torch.float32, device=device), torch.randn(77, dtype=torch.float64, device=device)]
    r, o = clone(ps), clone(ps)
    ref, ours = torch.optim.AdamW(r, lr=0.01), HO.AdamW(o, lr=0.01)
    run_pair(ref, ours, r, o, skip=None)
    torch.testing.assert_close(o[0], r[0], **TOL[torch.float32])
    torch.testing.assert_close(o[1], r[1], **TOL[torch.float64])


def test_adam_large_tensor_spans_threads():
    """Tensors bigger than one span (16k elements), with a tail that is not a whole vector."""
    ps = [torch.randn(100_003, dtype=torch.float64), torch.randn(16384 * 3 + 5, dtype=torch.float64)]
    r, o = clone(ps), clone(ps)
    ref, ours = torch.optim.Adam(r, lr=0.01, amsgrad=True), HO.Adam(o, lr=0.01, amsgrad=True)
    run_pair(ref, ours, r, o, steps=3, skip=None)
    assert_params_close(r, o, torch.float64)


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
    ra, rb, oa, ob = clone(a), clone(b), clone(a), clone(b)
    ref = torch.optim.RAdam(groups(ra, rb, group_b), **kw)
    ours = HO.RAdam(groups(oa, ob, group_b), **kw)

    def on_step(t):  # every step, so the steps around the rectification threshold are each checked
        assert_params_close(ra + rb, oa + ob, dtype)

    run_pair(ref, ours, ra + rb, oa + ob, on_step=on_step)
    assert_state_close(ref, ours, ra + rb, oa + ob, dtype)


@pytest.mark.parametrize("beta2", [0.999, 0.99, 0.9])
def test_radam_threshold_steps(beta2):
    """The first steps one by one, where ρ_t crosses 5 (between steps 5 and 6 for these β₂)."""
    p = [torch.randn(257, dtype=torch.float64)]
    r, o = clone(p), clone(p)
    ref, ours = torch.optim.RAdam(r, lr=0.1, betas=(0.9, beta2)), HO.RAdam(o, lr=0.1, betas=(0.9, beta2))
    run_pair(ref, ours, r, o, steps=10, skip=None, on_step=lambda t: assert_params_close(r, o, torch.float64))


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
    if not hasattr(HO, name):
        pytest.skip(f"hotkernels.optim.{name} not built yet")
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
    if not hasattr(HO, cls):
        pytest.skip(f"hotkernels.optim.{cls} not built yet")
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
    if not hasattr(HO, cls):
        pytest.skip(f"hotkernels.optim.{cls} not built yet")
    p = [torch.zeros(3, requires_grad=True)]
    with pytest.raises(ValueError, match=msg) as ours:
        getattr(HO, cls)(p, **kw)
    with pytest.raises(ValueError) as ref:
        getattr(torch.optim, cls)(p, **kw)
    assert str(ours.value) == str(ref.value)


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
        step([p.long()], [g.long()], [m.long()], [v.long()], [], [s], *args)
    with pytest.raises(RuntimeError, match=r"hotkernels.adam_step_: expected 'params\[0\]' to be a float32 or float64"):
        step([p.half()], [g.half()], [m.half()], [v.half()], [], [s], *args)
    with pytest.raises(RuntimeError, match=r"expected 'grads\[0\]' to have dtype"):
        step([p], [g.double()], [m], [v], [], [s], *args)
    with pytest.raises(RuntimeError, match=r"expected 'exp_avgs\[0\]' to have the shape"):
        step([p], [g], [torch.zeros(4)], [v], [], [s], *args)
    with pytest.raises(RuntimeError, match=r"expected 'exp_avg_sqs' to hold one tensor per param"):
        step([p], [g], [m], [], [], [s], *args)
    with pytest.raises(RuntimeError, match=r"expected 'grads\[0\]' to have the strides"):
        step([torch.zeros(3, 4)], [torch.zeros(4, 3).t()], [torch.zeros(3, 4)], [torch.zeros(3, 4)], [], [s], *args)
    with pytest.raises(RuntimeError, match="state step"):
        step([p], [g], [m], [v], [], [torch.tensor(0)], *args)


def test_mixed_devices_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    p = [torch.zeros(3, requires_grad=True), torch.zeros(3, device="cuda", requires_grad=True)]
    for x in p:
        x.grad = torch.ones_like(x)
    with pytest.raises(RuntimeError, match="expected all tensors to be on the same device"):
        HO.Adam(p).step()


def test_opcheck_adam_step():
    p = [torch.randn(5, 3), torch.randn(7)]
    args = ([x.clone() for x in p], [torch.randn_like(x) for x in p], [torch.zeros_like(x) for x in p],
            [torch.zeros_like(x) for x in p], [torch.zeros_like(x) for x in p], [torch.tensor(0.0) for _ in p],
            0.1, 0.9, 0.999, 1e-8, 0.01, True, False, False)
    torch.library.opcheck(torch.ops.hotkernels.adam_step_.default, args,
                          test_utils=("test_schema", "test_faketensor"))
