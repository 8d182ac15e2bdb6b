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
    conv = hotkernels.convert(model)
    assert sum(old == "torch.nn.Conv2d" for old, _ in conv.swapped.values()) == 6
    assert {"4", "5", "7"}.isdisjoint(conv.swapped)  # blocks, Flatten, Linear stay
    out, ref = model(x), ref_model(x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=name)
