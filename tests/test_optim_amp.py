"""Mixed precision and the training loop for the fused optimizers (issue #17): torch.amp.GradScaler
read inside the step (against torch's fused Adam, and every optimizer against itself behind
GradScaler's own unscale pass, overflow steps included), gradient clipping inside the step
(max_grad_norm against clip_grad_norm_ followed by the step) and bad GradScaler/clipping inputs.

float64 throughout where the comparison is with the same formulas: GradScaler's scales are powers
of two, so unscaling is exact on both sides and the runs differ only in the association order of
the norms (a few ulp: the TOL of tests/test_optim.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import hotkernels.optim as HO
from tests.conftest import run_with_isa
from tests.test_optim import TOL

# Every optimizer on a list of param groups, with its max_grad_norm (None: no clipping; LAMB's
# default 1.0 is NVLAMB's clipping, tested against its own formula below).
FACTORIES = {
    "Adam": lambda g, c: HO.Adam(g, lr=1e-2, amsgrad=True, weight_decay=0.1, max_grad_norm=c),
    "AdamW": lambda g, c: HO.AdamW(g, lr=1e-2, maximize=True, max_grad_norm=c),
    "RAdam": lambda g, c: HO.RAdam(g, lr=1e-2, betas=(0.9, 0.99), max_grad_norm=c),
    "Lamb": lambda g, c: HO.Lamb(g, lr=1e-2, max_grad_norm=c),
    "Ralamb": lambda g, c: HO.Ralamb(g, lr=1e-2, weight_decay=0.01, max_grad_norm=c),
    "NovoGrad": lambda g, c: HO.NovoGrad(g, lr=1e-2, betas=(0.9, 0.5), amsgrad=True, grad_averaging=True,
                                         weight_decay=0.01, max_grad_norm=c),
    "Lookahead": lambda g, c: HO.Lookahead(HO.Adam(g, lr=1e-2, max_grad_norm=c), k=3),
    "Ranger": lambda g, c: HO.Ranger(g, lr=1e-2, k=3, max_grad_norm=c),
    "RangerLars": lambda g, c: HO.RangerLars(g, lr=1e-2, k=3, max_grad_norm=c),
}
STEPS = 8  # past RAdam's rectification threshold (β₂ = 0.99: step 6) and two Lookahead syncs
OVERFLOW_STEP = 2


def make_model(dtype, device):
    """A small regression: two param groups (weights, biases) and its data."""
    w1, w2 = torch.randn(6, 9, dtype=dtype, device=device), torch.randn(4, 6, dtype=dtype, device=device)
    b1, b2 = torch.randn(6, dtype=dtype, device=device), torch.randn(4, dtype=dtype, device=device)
    x, y = torch.randn(32, 9, dtype=dtype, device=device), torch.randn(32, 4, dtype=dtype, device=device)
    return [w1, w2, b1, b2], (x, y)


def clone(ps):
    return [p.detach().clone().requires_grad_() for p in ps]


def groups(ps):
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": 5e-3}]


def loss_of(ps, data):
    w1, w2, b1, b2 = ps
    x, y = data
    return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - y) ** 2).mean()


def backward(ps, data, scaler, step):
    """Scaled backward; at OVERFLOW_STEP one gradient gets an inf (GradScaler must skip that step)."""
    scaler.scale(loss_of(ps, data) * 1e3).backward()  # × 1e3: norms of ~10-100, so clipping acts
    if step == OVERFLOW_STEP:
        ps[1].grad[0, 0] = float("inf")


def states(opt):
    inner = getattr(opt, "optimizer", opt)
    return [{k: v.clone() for k, v in inner.state[p].items()} for g in inner.param_groups for p in g["params"]]


def assert_states_close(ours, theirs, tol):
    for a, b in zip(ours, theirs):
        assert set(a) == set(b)
        for key in a:
            torch.testing.assert_close(a[key], b[key], **tol)


def test_grad_scaler_matches_torch_fused_adam(device):
    """Ours takes GradScaler's scale and inf flag into its step as torch's fused Adam does: the same
    trajectory over an overflow step (skipped: params, moments and step counters untouched), the same
    scale afterwards. float64 (torch's fused Adam divides by the scale, GradScaler's slow path and
    ours multiply by its reciprocal: exact for its powers of two)."""
    ps, data = make_model(torch.float64, device)
    ref_p, our_p = clone(ps), clone(ps)
    ref = torch.optim.Adam(groups(ref_p), lr=1e-2, weight_decay=0.1, amsgrad=True, fused=True)
    ours = HO.Adam(groups(our_p), lr=1e-2, weight_decay=0.1, amsgrad=True)
    ref_scaler = torch.amp.GradScaler(device, init_scale=2.0**12, growth_interval=3)
    our_scaler = torch.amp.GradScaler(device, init_scale=2.0**12, growth_interval=3)
    scales = []
    for t in range(STEPS):
        for p, opt, scaler in ((ref_p, ref, ref_scaler), (our_p, ours, our_scaler)):
            opt.zero_grad()
            backward(p, data, scaler, t)
            scaler.step(opt)
            scaler.update()
        assert our_scaler.get_scale() == ref_scaler.get_scale()
        scales.append(our_scaler.get_scale())
        for a, b in zip(our_p, ref_p):
            torch.testing.assert_close(a, b, **TOL[torch.float64])
        assert_states_close(states(ours), states(ref), TOL[torch.float64])
    assert scales[OVERFLOW_STEP] == 2.0**11 and scales[-1] == 2.0**12  # it backed off at the overflow, grew back
    assert float(ours.state[our_p[0]]["step"]) == STEPS - 1  # the overflow step was not counted
    assert not hasattr(ours, "grad_scale") and not hasattr(ours, "found_inf")  # GradScaler removed them


def unscale_pass(opt):
    """The reference: the same optimizer behind GradScaler's own unscale pass (its slow path)."""
    inner = getattr(opt, "optimizer", opt)
    inner._step_supports_amp_scaling = False
    return opt


def clip_(ps, max_norm, lamb):
    """clip_grad_norm_ (LAMB: NVLAMB's clipping, the same without clip_grad_norm_'s 1e-6)."""
    if not lamb:
        return torch.nn.utils.clip_grad_norm_(ps, max_norm)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in ps]))
    if norm > max_norm:
        for p in ps:
            p.grad.mul_(max_norm / norm)
    return norm


@pytest.mark.parametrize("max_grad_norm", [None, 5.0], ids=["no_clip", "clip"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_grad_scaler_in_step_matches_unscale_pass(device, name, max_grad_norm):
    """Every optimizer with GradScaler inside its step against itself behind GradScaler's unscale
    pass (then clip_grad_norm_ of the unscaled gradients, when clipping): the same trajectory, an
    overflow step skipped entirely by both (Lookahead's k-step count included), and grad_norm the
    norm clip_grad_norm_ returns (of the unscaled gradients)."""
    lamb = name == "Lamb"
    ps, data = make_model(torch.float64, device)
    ref_p, our_p = clone(ps), clone(ps)
    ref = unscale_pass(FACTORIES[name](groups(ref_p), None))
    ours = FACTORIES[name](groups(our_p), max_grad_norm)
    ref_scaler = torch.amp.GradScaler(device, init_scale=2.0**10)
    our_scaler = torch.amp.GradScaler(device, init_scale=2.0**10)
    clipped = 0
    for t in range(STEPS):
        for opt in (ref, ours):
            opt.zero_grad()
        backward(ref_p, data, ref_scaler, t)
        backward(our_p, data, our_scaler, t)
        norm = None
        if max_grad_norm is not None:
            ref_scaler.unscale_(ref)
            norm = clip_(ref_p, max_grad_norm, lamb)
            clipped += bool(norm > max_grad_norm)
        ref_scaler.step(ref)
        ref_scaler.update()
        our_scaler.step(ours)
        our_scaler.update()
        assert our_scaler.get_scale() == ref_scaler.get_scale()
        for a, b in zip(our_p, ref_p):
            torch.testing.assert_close(a, b, **TOL[torch.float64])
        assert_states_close(states(ours), states(ref), TOL[torch.float64])
        if norm is not None and t != OVERFLOW_STEP:
            torch.testing.assert_close(ours.grad_norm, norm, **TOL[torch.float64])
    if max_grad_norm is not None:
        assert clipped >= STEPS // 2  # the clipping acted
    if hasattr(ours, "lookahead_step"):
        assert ours.lookahead_step == ref.lookahead_step == STEPS - 1


@pytest.mark.parametrize("name", list(FACTORIES))
def test_found_inf_skips_the_whole_step(device, name):
    """found_inf set: params, state (step counters included) and Lookahead's count stay exactly as
    they were; the same optimizer steps normally once it is clear."""
    ps, data = make_model(torch.float32, device)
    ps = clone(ps)
    opt = FACTORIES[name](groups(ps), 1.0)
    for _ in range(2):
        opt.zero_grad()
        loss_of(ps, data).backward()
        opt.step()
    before_p, before_s = [p.detach().clone() for p in ps], states(opt)
    before_count = getattr(opt, "lookahead_step", None)
    opt.grad_scale = torch.tensor(4.0, device=device)
    opt.found_inf = torch.tensor(1.0, device=device)
    opt.step()
    for a, b in zip(ps, before_p):
        assert torch.equal(a, b)
    for a, b in zip(states(opt), before_s):
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert getattr(opt, "lookahead_step", None) == before_count
    opt.found_inf = torch.tensor(0.0, device=device)
    opt.step()
    assert not all(torch.equal(a, b) for a, b in zip(ps, before_p))


@pytest.mark.parametrize("name", [n for n in FACTORIES if n != "Lamb"])
@pytest.mark.parametrize("max_grad_norm", [0.05, 1e6], ids=["clipping", "not_clipping"])
def test_max_grad_norm_is_clip_grad_norm_then_step(device, name, max_grad_norm):
    """max_grad_norm equals torch.nn.utils.clip_grad_norm_ over every param of the optimizer (all
    groups) followed by the step without it, float64 tight; grad_norm is clip_grad_norm_'s total
    norm, and the step leaves the gradients as they were."""
    ps, data = make_model(torch.float64, device)
    ref_p, our_p = clone(ps), clone(ps)
    ref, ours = FACTORIES[name](groups(ref_p), None), FACTORIES[name](groups(our_p), max_grad_norm)
    for _ in range(STEPS):
        for p, opt in ((ref_p, ref), (our_p, ours)):
            opt.zero_grad()
            loss_of(p, data).backward()
        norm = torch.nn.utils.clip_grad_norm_(ref_p, max_grad_norm)
        grads = [p.grad.clone() for p in our_p]
        ref.step()
        ours.step()
        assert all(torch.equal(p.grad, g) for p, g in zip(our_p, grads))
        torch.testing.assert_close(ours.grad_norm, norm, **TOL[torch.float64])
        for a, b in zip(our_p, ref_p):
            torch.testing.assert_close(a, b, **TOL[torch.float64])
        assert_states_close(states(ours), states(ref), TOL[torch.float64])


def test_no_grad_norm_without_clipping():
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = HO.Adam([p])
    opt.step()
    assert opt.grad_norm is None


def test_grad_scaler_state_dict_round_trip(device):
    """An optimizer stepped under a GradScaler (overflow included) saves and reloads as any other:
    the reloaded one continues the same trajectory."""
    ps, data = make_model(torch.float64, device)
    a_p = clone(ps)
    a = HO.Adam(groups(a_p), lr=1e-2, max_grad_norm=5.0)
    scaler = torch.amp.GradScaler(device, init_scale=2.0**10)
    for t in range(4):
        a.zero_grad()
        backward(a_p, data, scaler, t)
        scaler.step(a)
        scaler.update()
    b_p = clone(a_p)
    b = HO.Adam(groups(b_p), lr=1e-2, max_grad_norm=5.0)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for p, opt in ((a_p, a), (b_p, b)):
        opt.zero_grad()
        loss_of(p, data).backward()
        opt.step()
    for x, y in zip(a_p, b_p):
        assert torch.equal(x, y)


def _one_param_adam(device="cpu"):
    p = torch.ones(3, device=device, requires_grad=True)
    p.grad = torch.ones(3, device=device)
    return HO.Adam([p])


@pytest.mark.parametrize("attr,value,msg", [
    ("found_inf", lambda d: torch.tensor(0, device=d), r"'found_inf' to be a one-element float32 or float64 tensor"),
    ("found_inf", lambda d: torch.zeros(2, device=d),
     r"'found_inf' to be a one-element .* but got Float of shape \[2\]"),
    ("grad_scale", lambda d: torch.tensor(2, dtype=torch.int32, device=d), r"'grad_scale' to be a one-element"),
])
def test_bad_grad_scaler_inputs_name_the_optimizer_and_the_argument(device, attr, value, msg):
    opt = _one_param_adam(device)
    setattr(opt, attr, value(device))
    with pytest.raises(RuntimeError, match=rf"^hotkernels\.optim\.Adam: expected {msg}.*\(in hotkernels\.adam_step_\)"):
        opt.step()
    assert float(opt.state[opt.param_groups[0]["params"][0]]["step"]) == 0  # nothing counted


def test_bad_grad_scaler_device_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    opt = _one_param_adam("cuda")
    opt.found_inf = torch.tensor(0.0)  # on the CPU
    with pytest.raises(RuntimeError, match=r"'found_inf' to be a one-element float32 or float64 tensor on cuda"):
        opt.step()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_bad_max_grad_norm(name):
    with pytest.raises(ValueError, match="Invalid max_grad_norm value: -1"):
        FACTORIES[name]([torch.zeros(2, requires_grad=True)], -1.0)


def test_op_checks_clipping_arguments():
    p, g, m, v, s = torch.zeros(3), torch.ones(3), torch.zeros(3), torch.zeros(3), torch.tensor(0.0)
    step = torch.ops.hotkernels.adam_step_
    args = (0.1, 0.9, 0.999, 1e-8, 0.0, False, False, False)
    with pytest.raises(RuntimeError,
                       match=r"hotkernels.adam_step_: clipping \(max_grad_norm > 0\) needs 'grad_sq_norm'"):
        step([p], [g], [m], [v], [], [s], [], *args, max_grad_norm=1.0)
    with pytest.raises(RuntimeError, match=r"hotkernels.adam_step_: expected 'max_grad_norm' to be >= 0"):
        step([p], [g], [m], [v], [], [s], [], *args, grad_sq_norm=torch.tensor(3.0), max_grad_norm=-1.0)
    assert float(s) == 0 and torch.equal(p, torch.zeros(3))


# --- master weights and stochastic rounding (CPU)

MASTER_STEPS = 7  # past RAdam's rectification threshold (β₂ = 0.99: step 6) and two Lookahead syncs (k = 3)
# The optimizers whose kernels reduce nothing: their float32 math on the master copies is the float32
# run's, bit for bit. The others (LAMB's and Ralamb's norms, NovoGrad's layer norms, the clipping
# norm) sum the widened gradients block by block, in another order than over the whole span.
ELEMENTWISE = {"Adam", "AdamW", "RAdam", "Lookahead", "Ranger"}


def _master_factory(name, **kw):
    return lambda g: {
        "Adam": lambda: HO.Adam(g, lr=1e-2, amsgrad=True, weight_decay=0.1, **kw),
        "AdamW": lambda: HO.AdamW(g, lr=1e-2, **kw),
        "RAdam": lambda: HO.RAdam(g, lr=1e-2, betas=(0.9, 0.99), **kw),
        "Lamb": lambda: HO.Lamb(g, lr=1e-2, **kw),
        "Ralamb": lambda: HO.Ralamb(g, lr=1e-2, weight_decay=0.01, **kw),
        "NovoGrad": lambda: HO.NovoGrad(g, lr=1e-2, betas=(0.9, 0.5), amsgrad=True, grad_averaging=True, **kw),
        "Lookahead": lambda: HO.Lookahead(HO.Adam(g, lr=1e-2, **kw), k=3),
        "Ranger": lambda: HO.Ranger(g, lr=1e-2, k=3, **kw),
        "RangerLars": lambda: HO.RangerLars(g, lr=1e-2, k=3, **kw),
    }[name]()


def _half_and_float(dtype, shapes=((40, 25), (77,), (3, 5, 7), ())):
    half = [torch.randn(s).to(dtype) for s in shapes]
    return clone(half), clone([p.float() for p in half])


def _master(opt, p):
    return getattr(opt, "optimizer", opt).state[p]["master_param"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_master_weights_are_the_float32_run(name, dtype):
    """master_weights: the float32 master copies step exactly as float32 params given the same
    (half) gradients do (bit for bit where the kernels reduce nothing; else within the float32
    rounding of the reordered norms: relative 2^-20 of each step's update of ~lr, over the steps),
    their state is float32, and each half param is its master copy rounded to nearest."""
    ph, pf = _half_and_float(dtype)
    opt_h = _master_factory(name, master_weights=True)(ph)
    opt_f = _master_factory(name)(pf)
    for _ in range(MASTER_STEPS):
        for a, b in zip(ph, pf):
            g = torch.randn(a.shape).to(dtype)
            a.grad, b.grad = g, g.float()
        opt_h.step()
        opt_f.step()
    tol = dict(rtol=0, atol=0) if name in ELEMENTWISE else dict(rtol=2**-20, atol=MASTER_STEPS * 1e-2 * 2**-20)
    for a, b in zip(ph, pf):
        master = _master(opt_h, a)
        assert master.dtype == torch.float32 and a.dtype == dtype
        torch.testing.assert_close(master, b.detach(), **tol)
        assert torch.equal(a.detach(), master.to(dtype))
        state = getattr(opt_h, "optimizer", opt_h).state[a]
        assert all(t.dtype == torch.float32 for key, t in state.items() if key != "step")


def test_master_weights_in_a_mixed_group_and_state_dict_round_trip():
    """A float32 param beside bfloat16 ones in a master_weights group has no master copy; the
    masters and float32 state survive state_dict and load_state_dict (torch.optim would cast them to
    the params' dtype), and the reloaded optimizer continues the same trajectory."""
    ph, _ = _half_and_float(torch.bfloat16)
    ph.append(torch.randn(6, requires_grad=True))
    a = HO.Adam(ph, lr=1e-2, master_weights=True)
    for _ in range(3):
        for p in ph:
            p.grad = torch.randn_like(p)
        a.step()
    assert "master_param" not in a.state[ph[-1]] and a.state[ph[-1]]["exp_avg"].dtype == torch.float32
    pb = clone(ph)
    b = HO.Adam(pb, lr=1e-2, master_weights=True)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for p, q in zip(ph[:-1], pb[:-1]):
        assert b.state[q]["master_param"].dtype == b.state[q]["exp_avg"].dtype == torch.float32
        assert torch.equal(b.state[q]["master_param"], a.state[p]["master_param"])
    for p, q in zip(ph, pb):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    a.step()
    b.step()
    for p, q in zip(ph, pb):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RAdam"])
@pytest.mark.parametrize("n", [7, 1005, 70_000], ids=["tail", "vectors+tail", "spans"])
def test_bfloat16_step_is_the_float32_step_rounded(name, n):
    """A bfloat16 param with bfloat16 state (the CPU converts each vector in registers, a kernel of
    its own) steps exactly as float32 Adam on the widened values, rounded to nearest: params, moments,
    every step (RAdam's first ones un-rectified), with L2 or decoupled weight decay and maximize.
    Lengths: a tail shorter than a vector, vectors and a tail, several spans over threads. (Not with
    clipping: the norm of bfloat16 grads is summed in widened blocks, of float32 ones per span, so the
    two factors may differ in their last bits.)"""
    make = {"Adam": lambda q: HO.Adam(q, lr=1e-2, weight_decay=0.1),
            "AdamW": lambda q: HO.AdamW(q, lr=1e-2, maximize=True),
            "RAdam": lambda q: HO.RAdam(q, lr=1e-2, weight_decay=0.1)}[name]
    torch.manual_seed(0)
    p = torch.randn(n).bfloat16().requires_grad_()
    opt = make([p])
    for _ in range(STEPS):
        p.grad = torch.randn(n).bfloat16()
        twin = p.detach().float().requires_grad_()
        twin.grad = p.grad.float()
        ref = make([twin])
        if opt.state[p]:
            ref.state[twin] = {k: v.float() if v.dtype == torch.bfloat16 else v.clone() for k, v in opt.state[p].items()}
        opt.step()
        ref.step()
        assert torch.equal(p.detach(), twin.detach().bfloat16())
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt.state[p][key].dtype == torch.bfloat16
            assert torch.equal(opt.state[p][key], ref.state[twin][key].bfloat16()), key



def test_bfloat16_step_on_every_cpu_instruction_set(cpu_isa):
    """The bfloat16 Adam kernel converts two vectors at a time in an order of its own on AVX2 and
    AVX-512 (lane halves), in element order elsewhere: each path this CPU runs steps as float32 Adam
    rounded, at every length class, and writes special values' bits as torch's rounding does (±inf and
    the largest finite value kept; NaN as 0x7FC0)."""
    code = (
        "import torch, hotkernels.optim as HO\n"
        "import tests.test_optim_amp as T\n"
        "for name in ['Adam', 'AdamW', 'RAdam']:\n"
        "    for n in [7, 1005, 70_000]:\n"
        "        T.test_bfloat16_step_is_the_float32_step_rounded(name, n)\n"
        "n = 100\n"
        "p = torch.randn(n).bfloat16().requires_grad_()\n"
        "with torch.no_grad():\n"
        "    p[3], p[40], p[41], p[42] = float('nan'), float('inf'), -float('inf'), 3.3895313892515355e38\n"
        "p.grad = torch.randn(n).bfloat16()\n"
        "twin = p.detach().float().requires_grad_(); twin.grad = p.grad.float()\n"
        "HO.Adam([p], lr=0.0).step(); HO.Adam([twin], lr=0.0).step()\n"
        "got, want = p.detach().view(torch.int16), twin.detach().bfloat16().view(torch.int16)\n"
        "assert got[3] == 0x7FC0 and p[3].isnan() and twin[3].isnan()  # torch's own NaN bits vary\n"
        "keep = torch.arange(n) != 3\n"
        "assert torch.equal(got[keep], want[keep])\n"
    )
    run_with_isa(cpu_isa, code)

@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.8])
def test_stochastic_rounding_is_unbiased(fraction):
    """A float32 master value `fraction` of a bfloat16 unit above a bfloat16 value rounds up with that
    probability (lr = 0: the step leaves the masters as they are and writes them to the params):
    over 2^17 elements the share rounded up is within 5 binomial standard deviations of it."""
    n, ulp = 1 << 17, 2.0**-7  # bfloat16's unit in the last place at [1, 2)
    p = torch.ones(n, dtype=torch.bfloat16, requires_grad=True)
    p.grad = torch.zeros_like(p)
    opt = HO.Adam([p], lr=0.0, master_weights=True, stochastic_rounding=True)
    opt.state[p]["master_param"] = torch.full((n,), 1 + fraction * ulp)
    opt.step()
    up = (p.detach().float() == 1 + ulp).double().mean().item()
    assert torch.all((p.detach() == 1) | (p.detach().float() == 1 + ulp))
    assert abs(up - fraction) <= 5 * (fraction * (1 - fraction) / n) ** 0.5


def _regression_run(dtype, steps, **kw):
    """`steps` Adam steps (lr 1e-3) on a small regression, params starting at 1 (bfloat16's unit there
    is 2^-7 = 7.8e-3: every update of ~lr is under half of it)."""
    torch.manual_seed(0)
    x = torch.randn(64, 16)
    w_true = 1 + torch.rand(16, 4)  # ~1.5 away: the float32 run moves all steps long
    y = x @ w_true
    w = torch.ones(16, 4, dtype=dtype, requires_grad=True)
    opt = HO.Adam([w], lr=1e-3, **kw)
    for _ in range(steps):
        w.grad = (2 * x.T @ (x @ w.detach().float() - y) / len(x)).to(dtype)
        opt.step()
    return w.detach().float()


def test_long_bfloat16_run_stochastic_rounding_tracks_float32():
    """1000 steps with updates under half a bfloat16 unit: rounding to nearest stalls (the params never
    move), stochastic rounding tracks the float32 run (its error a small share of how far that run
    moved), the same under the same torch.manual_seed and different under another."""
    steps = 1000
    exact = _regression_run(torch.float32, steps)
    nearest = _regression_run(torch.bfloat16, steps)
    sr = _regression_run(torch.bfloat16, steps, stochastic_rounding=True)
    moved = (exact - 1).abs().mean()
    assert moved > 0.4  # 0.45: over 50 bfloat16 units
    assert torch.equal(nearest, torch.ones_like(nearest))  # stalled
    assert (sr - exact).abs().mean() < 0.05 * moved
    assert torch.equal(sr, _regression_run(torch.bfloat16, steps, stochastic_rounding=True))  # deterministic


def test_stochastic_rounding_follows_torch_seed():
    """The rounding bits come from torch's default generator: the same seed, the same params; another
    seed, other params."""
    def run(seed):
        torch.manual_seed(seed)
        p = torch.ones(4096, dtype=torch.bfloat16, requires_grad=True)
        p.grad = torch.full_like(p, 1.0)
        opt = HO.Adam([p], lr=1e-3, stochastic_rounding=True)
        for _ in range(3):
            opt.step()
        return p.detach().clone()
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_master_weights_refused_on_cuda_by_lamb():
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    p = torch.ones(3, dtype=torch.bfloat16, device="cuda", requires_grad=True)
    p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="not implemented on CUDA yet"):
        HO.Lamb([p], master_weights=True).step()


@pytest.mark.parametrize("capturable", [False, True])
@pytest.mark.parametrize("name", ["Adam", "RAdam"])
def test_master_weights_and_stochastic_rounding_cuda_match_cpu(name, capturable):
    """CUDA's Adam family with master weights and stochastic rounding against the CPU's: the float32
    masters within float32 rounding of each other (the same formulas, another compiler: relative
    2^-20 of updates of ~lr per step), the bfloat16 params rounded from them with the same random
    bits (so equal wherever the masters are not within 2^-20 of a rounding threshold: all but a few)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a GPU")
    ph, _ = _half_and_float(torch.bfloat16)
    on_gpu = [p.detach().cuda().requires_grad_() for p in ph]
    kw = dict(lr=1e-2, master_weights=True, stochastic_rounding=True)
    cpu = getattr(HO, name)(ph, **kw)
    gpu = getattr(HO, name)(on_gpu, capturable=capturable, **kw)
    for t in range(MASTER_STEPS):
        for a, b in zip(ph, on_gpu):
            a.grad = torch.randn(a.shape).to(torch.bfloat16)
            b.grad = a.grad.cuda()
        torch.manual_seed(t)
        cpu.step()
        torch.manual_seed(t)
        gpu.step()
    for a, b in zip(ph, on_gpu):
        torch.testing.assert_close(_master(gpu, b).cpu(), _master(cpu, a), rtol=2**-20,
                                   atol=MASTER_STEPS * 1e-2 * 2**-20)
        assert (b.detach().cpu() != a.detach()).float().mean() < 0.01
