"""hotkernels.convert: swaps torch.nn modules for the hotkernels drop-ins and back, keeping weights,
device, dtype and mode; converted models compute the same function."""

import torch
from torch import nn

import hotkernels


def small_model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 6), nn.Mish(), nn.Sequential(nn.Mish(inplace=True), nn.Linear(6, 2)))


def test_round_trip_keeps_outputs_and_state():
    model = small_model().double().eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    before, state = model(x), {k: v.clone() for k, v in model.state_dict().items()}
    conv = hotkernels.convert(model)
    assert conv.model is model
    assert set(conv.swapped) == {"1", "2.0"}
    assert type(model[1]) is hotkernels.nn.Mish and model[2][0].inplace
    assert "2 x torch.nn.Mish -> hotkernels.nn.Mish" in str(conv)
    assert not model.training and next(model.parameters()).dtype == torch.float64
    torch.testing.assert_close(model(x), before)
    back = hotkernels.convert(model, reverse=True)
    assert set(back.swapped) == {"1", "2.0"} and type(model[1]) is nn.Mish
    torch.testing.assert_close(model(x), before)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_not_inplace_leaves_the_original():
    model = small_model()
    conv = hotkernels.convert(model, inplace=False)
    assert conv.model is not model and type(model[1]) is nn.Mish and type(conv.model[1]) is hotkernels.nn.Mish


def test_subclasses_and_unknown_modules_are_left_alone():
    class MyMish(nn.Mish):
        pass

    model = nn.Sequential(MyMish(), nn.ReLU())
    conv = hotkernels.convert(model)
    assert conv.swapped == {} and type(model[0]) is MyMish
    assert str(conv) == "hotkernels.convert: nothing to swap"
