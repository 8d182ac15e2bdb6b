"""hotkernels.convert: swaps torch.nn modules for the hotkernels drop-ins and back, keeping weights,
device, dtype and mode; converted models compute the same function."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

import hotkernels


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 6), nn.Mish(), nn.Sequential(nn.Mish(inplace=True), nn.Linear(6, 2)))


def conversion(model: nn.Module, **kwargs) -> hotkernels.Conversion:
    """What ``hotkernels.convert(model, **kwargs)`` did, checking that it returned the model."""
    assert hotkernels.convert(model, **kwargs) is model
    return model.hotkernels_conversion


def test_round_trip_keeps_outputs_and_state():
    model = small_model().double().eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    before, state = model(x), {k: v.clone() for k, v in model.state_dict().items()}
    assert hotkernels.convert(model) is model  # model = hotkernels.convert(model) keeps the model
    conv = model.hotkernels_conversion
    assert set(conv.swapped) == {"0", "1", "2.0", "2.1"}
    assert type(model[1]) is hotkernels.nn.Mish and model[2][0].inplace and type(model[0]) is hotkernels.nn.Linear
    assert "2 x torch.nn.Mish -> hotkernels.nn.Mish" in str(conv)
    assert "2 x torch.nn.Linear -> hotkernels.nn.Linear" in str(conv)
    assert not model.training and next(model.parameters()).dtype == torch.float64
    assert model.state_dict().keys() == state.keys()  # the summary is no state
    torch.testing.assert_close(model(x), before)
    assert hotkernels.convert(model, reverse=True) is model
    back = model.hotkernels_conversion
    assert set(back.swapped) == {"0", "1", "2.0", "2.1"} and type(model[1]) is nn.Mish and type(model[0]) is nn.Linear
    assert "2 x hotkernels.nn.Mish -> torch.nn.Mish" in str(back)
    torch.testing.assert_close(model(x), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_not_inplace_leaves_the_original():
    model = small_model()
    copied = hotkernels.convert(model, inplace=False)
    assert copied is not model and type(model[1]) is nn.Mish and type(copied[1]) is hotkernels.nn.Mish
    assert not hasattr(model, "hotkernels_conversion")
    assert set(copied.hotkernels_conversion.swapped) == {"0", "1", "2.0", "2.1"}


def test_verbose_prints_the_summary(capsys):
    model = small_model()
    hotkernels.convert(model)
    assert capsys.readouterr().out == ""
    hotkernels.convert(model, reverse=True, verbose=True)
    assert capsys.readouterr().out == str(model.hotkernels_conversion) + "\n"
    assert capsys.readouterr().out == ""
    hotkernels.convert(model, verbose=True)
    assert capsys.readouterr().out == ("hotkernels.convert: swapped 4 modules\n"
                                       "     2 x torch.nn.Linear -> hotkernels.nn.Linear\n"
                                       "     2 x torch.nn.Mish -> hotkernels.nn.Mish\n")


def test_subclasses_and_unknown_modules_are_left_alone():
    class MyMish(nn.Mish):
        pass

    model = nn.Sequential(MyMish(), nn.ReLU())
    conv = conversion(model)
    assert conv.swapped == {} and type(model[0]) is MyMish
    assert str(conv) == "hotkernels.convert: nothing to swap"


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out (no torchvision needed)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


def resnet_like() -> nn.Module:
    """A small torchvision-style ResNet: 7x7/s2 stem, 3x3/s2 max pool, two stages, average pool."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        BasicBlock(16, 16, 1), BasicBlock(16, 32, 2),
        nn.AvgPool2d(8), nn.Flatten(), nn.Linear(32, 10),
    )


def test_resnet_converts_with_identical_outputs_and_gradients():
    torch.manual_seed(0)
    model = resnet_like().double().train()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    ref_model = resnet_like().double().train()
    ref_model.load_state_dict(model.state_dict())
    conv = conversion(model)
    assert sum(old == "torch.nn.Conv2d" for old, _ in conv.swapped.values()) == 6
    assert {"4", "5", "7"}.isdisjoint(conv.swapped)  # blocks, Flatten, Linear stay
    out, ref = model(x), ref_model(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=name)


# ---- what convert swaps and what it keeps as torch's ---------------------------------------------

F64 = dict(rtol=1e-10, atol=1e-12)


def _tensors(out) -> list[torch.Tensor]:
    """A module's outputs as a flat list of tensors (tuples, (h, c) pairs, packed sequences)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, PackedSequence):
        return [out.data]
    return [t for o in out for t in _tensors(o)]


def _run(module: nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`module`'s outputs on a copy of `x`, and the gradients of `x` and of its parameters for random
    cotangents of the floating-point outputs (the same for every module, by `seed`)."""
    x = x.detach().clone().requires_grad_(x.is_floating_point())
    outs = _tensors(module(x.clone()))  # a non-leaf input, which in-place modules may overwrite
    floats = [o for o in outs if o.is_floating_point() and o.requires_grad]
    gen = torch.Generator().manual_seed(seed)
    cots = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in floats]
    wrt = [x, *module.parameters()]
    return outs, list(torch.autograd.grad(floats, wrt, cots))


def _lstm_input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64)


IMAGE = (2, 4, 9, 10)
SWAPPED = {
    # nn.Conv2d: every padding form and mode, stride, dilation, groups, bias.
    "conv2d": (lambda: nn.Conv2d(4, 6, 3), IMAGE),
    "conv2d-stride-padding-pair": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=(1, 2)), IMAGE),
    "conv2d-same-odd": (lambda: nn.Conv2d(4, 6, 3, padding="same"), IMAGE),
    "conv2d-same-even": (lambda: nn.Conv2d(4, 6, 4, padding="same"), IMAGE),
    "conv2d-same-even-dilated": (lambda: nn.Conv2d(4, 6, (2, 3), padding="same", dilation=(3, 2)), IMAGE),
    "conv2d-valid": (lambda: nn.Conv2d(4, 6, 3, padding="valid"), IMAGE),
    "conv2d-dilation": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=(2, 1)), IMAGE),
    "conv2d-groups-no-bias": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), IMAGE),
    "conv2d-depthwise": (lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4), IMAGE),
    "conv2d-reflect": (lambda: nn.Conv2d(4, 6, 3, padding=(1, 2), padding_mode="reflect"), IMAGE),
    "conv2d-replicate-same-even": (lambda: nn.Conv2d(4, 6, 2, padding="same", padding_mode="replicate"), IMAGE),
    "conv2d-circular-dilated": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, padding_mode="circular"), IMAGE),
    "conv2d-unbatched": (lambda: nn.Conv2d(4, 6, 3, padding=1), IMAGE[1:]),
    # nn.MaxPool2d: stride, padding, dilation, ceil_mode, return_indices.
    "maxpool": (lambda: nn.MaxPool2d(2), IMAGE),
    "maxpool-stride-padding": (lambda: nn.MaxPool2d(3, 2, 1), IMAGE),
    "maxpool-rectangular": (lambda: nn.MaxPool2d((2, 3), (1, 2)), IMAGE),
    "maxpool-dilation": (lambda: nn.MaxPool2d(3, 1, 1, dilation=2), IMAGE),
    "maxpool-ceil-mode": (lambda: nn.MaxPool2d(3, 2, ceil_mode=True), IMAGE),
    "maxpool-indices": (lambda: nn.MaxPool2d(3, 2, 1, return_indices=True), IMAGE),
    "maxpool-everything": (lambda: nn.MaxPool2d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True), IMAGE),
    # nn.AvgPool2d: stride, padding, ceil_mode, count_include_pad, divisor_override.
    "avgpool": (lambda: nn.AvgPool2d(2), IMAGE),
    "avgpool-padding": (lambda: nn.AvgPool2d(3, 2, 1), IMAGE),
    "avgpool-exclude-pad": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), IMAGE),
    "avgpool-ceil-mode": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True), IMAGE),
    "avgpool-divisor": (lambda: nn.AvgPool2d((2, 3), (1, 2), (1, 1), divisor_override=5), IMAGE),
    "avgpool-everything": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=2),
                           IMAGE),
    # nn.Linear: bias; any leading dimensions.
    "linear": (lambda: nn.Linear(4, 6), (3, 4)),
    "linear-no-bias-3d": (lambda: nn.Linear(4, 6, bias=False), (2, 3, 4)),
    "linear-1d": (lambda: nn.Linear(4, 6), (4,)),
    # nn.Mish: inplace.
    "mish": (lambda: nn.Mish(), IMAGE),
    "mish-inplace": (lambda: nn.Mish(inplace=True), IMAGE),
    # nn.LSTMCell: bias.
    "lstmcell": (lambda: nn.LSTMCell(4, 6), (3, 4)),
    "lstmcell-no-bias": (lambda: nn.LSTMCell(4, 6, bias=False), (3, 4)),
    # nn.LSTM: num_layers, bias, batch_first, dropout (off in eval mode), bidirectional, proj_size.
    "lstm": (lambda: nn.LSTM(4, 6), (5, 3, 4)),
    "lstm-layers-no-bias": (lambda: nn.LSTM(4, 6, 2, bias=False), (5, 3, 4)),
    "lstm-batch-first-bidirectional": (lambda: nn.LSTM(4, 6, 2, batch_first=True, bidirectional=True), (3, 5, 4)),
    "lstm-dropout-eval": (lambda: nn.LSTM(4, 6, 2, dropout=0.3).eval(), (5, 3, 4)),
    "lstm-dropout-1-train": (lambda: nn.LSTM(4, 6, 2, dropout=1.0), (5, 3, 4)),
    "lstm-proj-size": (lambda: nn.LSTM(4, 6, proj_size=3), (5, 3, 4)),
    "lstm-proj-size-layers-bidirectional-no-bias": (
        lambda: nn.LSTM(4, 6, 2, bias=False, batch_first=True, bidirectional=True, proj_size=2), (3, 5, 4)),
}


@pytest.mark.parametrize("case", SWAPPED.values(), ids=SWAPPED.keys())
def test_swapped_modules_compute_as_torch(case):
    factory, shape = case
    theirs = factory().double()
    ours = copy.deepcopy(theirs)
    conv = conversion(ours)
    assert conv.kept == {}
    name = type(theirs).__name__
    assert conv.swapped == {"(model)": (f"torch.nn.{name}", f"hotkernels.nn.{name}")}
    x = torch.randn(*shape, dtype=torch.float64)
    (outs, grads), (want_outs, want_grads) = _run(ours, x), _run(theirs, x)
    assert len(outs) == len(want_outs) and len(grads) == len(want_grads)
    for k, (got, want) in enumerate(zip(outs, want_outs)):
        assert got.dtype == want.dtype and got.shape == want.shape, k
        torch.testing.assert_close(got, want, **F64, msg=lambda m: f"output {k}: {m}")
    for k, (got, want) in enumerate(zip(grads, want_grads)):
        torch.testing.assert_close(got, want, **F64, msg=lambda m: f"gradient {k}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(padding="same", dilation=2, padding_mode="reflect")],
                         ids=["padding", "same-reflect"])
def test_swapped_half_conv2d_on_cpu(dtype, kwargs):
    """float16/bfloat16 Conv2d on the CPU is swapped: ours computes in float32 and rounds, as torch's
    does; the sums run in another order, so results may differ by a rounding of the half type at the
    largest magnitude (allowed: 2 such roundings)."""
    theirs = nn.Conv2d(4, 6, 3, **kwargs).to(dtype)
    ours = copy.deepcopy(theirs)
    assert conversion(ours).swapped == {"(model)": ("torch.nn.Conv2d", "hotkernels.nn.Conv2d")}
    x = torch.randn(IMAGE).to(dtype)
    (outs, grads), (want_outs, want_grads) = _run(ours, x), _run(theirs, x)
    for got, want in zip(outs + grads, want_outs + want_grads, strict=True):
        assert got.dtype == dtype
        atol = 2 * torch.finfo(dtype).eps * want.abs().max().item()
        torch.testing.assert_close(got, want, rtol=0, atol=atol)


def _runs_as_torch(theirs: nn.Module, hk_class: type[nn.Module], x: torch.Tensor) -> bool:
    """Whether `theirs`, swapped by force into `hk_class`, gives torch's outputs on `x`."""
    forced = copy.deepcopy(theirs)
    forced.__class__ = hk_class
    try:
        got = _tensors(forced(x))
    except (RuntimeError, ValueError, TypeError):
        return False
    want = _tensors(theirs(x))
    return len(got) == len(want) and all(a.shape == b.shape and torch.allclose(a, b) for a, b in zip(got, want))


KEPT = {
    "conv2d-complex64": (lambda: nn.Conv2d(4, 6, 3), IMAGE, torch.complex64,
                         "'weight' is torch.complex64 on cpu, which hotkernels does not compute"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("factory", [lambda: nn.LSTM(4, 6, 2, bidirectional=True), lambda: nn.LSTM(4, 6, proj_size=2),
                                     lambda: nn.LSTMCell(4, 6, bias=False)], ids=["lstm", "lstm-proj", "cell"])
def test_half_lstms_on_cpu_are_swapped(dtype, factory):
    """float16/bfloat16 LSTMs on the CPU are swapped (they run in float32 and round; their accuracy
    against torch's: tests/test_lstm.py, test_half_types_on_cpu_as_accurate_as_torch)."""
    theirs = factory().to(dtype)
    model = nn.Sequential(theirs)
    conv = conversion(model)
    name = type(theirs).__name__
    assert conv.swapped == {"0": (f"torch.nn.{name}", f"hotkernels.nn.{name}")} and conv.kept == {}
    x = torch.randn(5, 3, 4).to(dtype) if name == "LSTM" else torch.randn(3, 4).to(dtype)
    assert all(t.dtype == dtype for t in _tensors(model(x)))


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
@pytest.mark.parametrize("case", KEPT.values(), ids=KEPT.keys())
def test_modules_hotkernels_cannot_run_stay_torch(case):
    factory, shape, dtype, reason = case
    theirs = factory().to(dtype)
    model = nn.Sequential(nn.Mish(), theirs)
    x = torch.randn(*shape).to(dtype)
    hk_class = getattr(hotkernels.nn, type(theirs).__name__)
    assert not _runs_as_torch(theirs, hk_class, x), "hotkernels runs it now: swap it"
    conv = conversion(model)
    assert model[1] is theirs and type(theirs) is getattr(nn, type(theirs).__name__)
    assert conv.swapped == {"0": ("torch.nn.Mish", "hotkernels.nn.Mish")}
    assert conv.kept == {"1": reason}
    assert str(conv).splitlines()[-2:] == ["  kept 1 as torch's, which hotkernels cannot run:", f"    1: {reason}"]
    theirs(x)  # still torch's, and it runs


def test_modules_on_devices_without_kernels_stay_torch(monkeypatch):
    """Parameters on a device hotkernels has no kernels for (here: the CPU, taken out of the list of
    devices; for real, CUDA under a build without the CUDA kernels) keep the module torch's."""
    monkeypatch.setattr(hotkernels.nn._support, "DEVICE_TYPES", ("meta",))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LSTM(4, 6), nn.MaxPool2d(2))
    conv = conversion(model)
    assert conv.kept == {"0": "'weight' is on cpu, where hotkernels has no kernels",
                         "1": "'weight_ih_l0' is on cpu, where hotkernels has no kernels"}
    assert set(conv.swapped) == {"2"} and type(model[0]) is nn.Conv2d and type(model[1]) is nn.LSTM


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
def test_reverse_swaps_what_hotkernels_cannot_run():
    """Going back to torch needs nothing of hotkernels: a complex hotkernels Conv2d (which hotkernels
    refuses to compute) goes back to torch's, which runs it."""
    model = nn.Sequential(hotkernels.nn.Conv2d(4, 6, 3).to(torch.complex64))
    conv = conversion(model, reverse=True)
    assert conv.swapped == {"0": ("hotkernels.nn.Conv2d", "torch.nn.Conv2d")} and conv.kept == {}
    assert type(model[0]) is nn.Conv2d
    model[0](torch.randn(IMAGE).to(torch.complex64))


@pytest.mark.filterwarnings("ignore:Complex modules are a new feature")
def test_summary_with_nothing_swapped_lists_what_was_kept():
    conv = conversion(nn.Sequential(nn.Conv2d(4, 6, 3).to(torch.complex64)))
    assert str(conv) == ("hotkernels.convert: swapped 0 modules\n"
                         "  kept 1 as torch's, which hotkernels cannot run:\n"
                         "    0: 'weight' is torch.complex64 on cpu, which hotkernels does not compute")
