"""The over9000-style optimizer shoot-out, on data that ships offline: scikit-learn's digits
(1,797 8×8 images). Two small models are built twice, from hotkernels modules and from torch.nn
modules: a CNN (Conv2d → Mish → MaxPool2d → Conv2d → Mish → AvgPool2d → Linear) and an LSTM
classifier that reads the image rows as a sequence. Each optimizer trains each model for several
seeds; the report gives test accuracy (mean ± std) and time per step, hotkernels beside torch.

Run: ``python -m hotkernels train [--epochs N] [--seeds N] [--device cpu|cuda] [--plot PATH]``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from . import nn as hnn
from . import optim as hoptim
from ._progress import progress

# Every optimizer hotkernels.optim exports, each once, under the first of its names there (LAMB, not
# its alias Lamb): the shoot-out's default.
OPTIMIZERS = sorted({getattr(hoptim, name): name for name in reversed(hoptim.__all__)}.values(),
                    key=hoptim.__all__.index)
LR = 1e-2  # one learning rate for every optimizer, as in the over9000 comparison


def load_digits(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/test split (80/20, fixed) of scikit-learn's bundled digits, pixels scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError as e:
        raise SystemExit("hotkernels train needs scikit-learn (pip install 'hotkernels[train]')") from e
    data = sk_digits()
    x = torch.tensor(data.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    split = int(0.8 * len(y))
    train, test = order[:split], order[split:]
    return x[train].to(device), y[train].to(device), x[test].to(device), y[test].to(device)


class CNN(nn.Module):
    def __init__(self, lib) -> None:
        super().__init__()
        self.features = nn.Sequential(
            lib.Conv2d(1, 16, 3, padding=1), lib.Mish(), lib.MaxPool2d(2),  # 8x8 -> 4x4
            lib.Conv2d(16, 32, 3, padding=1), lib.Mish(), lib.AvgPool2d(2),  # 4x4 -> 2x2
        )
        self.head = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class RowLSTM(nn.Module):
    def __init__(self, lib) -> None:
        super().__init__()
        self.lstm = lib.LSTM(8, 64, batch_first=True)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.squeeze(1))  # (N, 8 rows, 8 pixels)
        return self.head(out[:, -1])


MODELS: dict[str, Callable[[object], nn.Module]] = {"cnn": CNN, "lstm": RowLSTM}


def make_optimizer(name: str, params, impl: str) -> torch.optim.Optimizer:
    """hotkernels' optimizer, or torch's built-in where torch has one (Adam, AdamW, RAdam); the
    others exist only in hotkernels, so both columns use it and the comparison is of the modules.
    Lookahead runs over Adam."""
    if impl == "torch" and hasattr(torch.optim, name):
        return getattr(torch.optim, name)(params, lr=LR)
    if name == "Lookahead":
        return hoptim.Lookahead(hoptim.Adam(params, lr=LR))
    return getattr(hoptim, name)(params, lr=LR)


@dataclass
class Run:
    accuracy: float
    ms_per_step: float
    curve: list[float] = field(default_factory=list)  # test accuracy after each epoch


def train_one(model_name: str, opt_name: str, impl: str, seed: int, data, epochs: int, batch: int = 64) -> Run:
    x_train, y_train, x_test, y_test = data
    torch.manual_seed(seed)
    model = MODELS[model_name](hnn if impl == "hotkernels" else nn).to(x_train.device)
    opt = make_optimizer(opt_name, model.parameters(), impl)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    steps, seconds, curve = 0, 0.0, []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen).to(x_train.device)
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
            if x_train.is_cuda:
                torch.cuda.synchronize()
            seconds += time.perf_counter() - start
            steps += 1
        model.eval()
        with torch.no_grad():
            curve.append((model(x_test).argmax(1) == y_test).float().mean().item())
    return Run(curve[-1], 1e3 * seconds / steps, curve)


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def shootout(epochs: int, seeds: int, device: str, models: list[str], optimizers: list[str]) -> tuple[list[str], dict]:
    data = load_digits(device)
    runs: dict[tuple[str, str, str], list[Run]] = {}
    jobs = [(m, o, impl, s) for m in models for o in optimizers for s in range(seeds) for impl in ("hotkernels", "torch")]
    for i, (m, o, impl, s) in enumerate(jobs):
        progress(i, len(jobs), f"{m} {o} {impl} seed {s}")
        runs.setdefault((m, o, impl), []).append(train_one(m, o, impl, s, data, epochs))
    progress(len(jobs), len(jobs), "done")
    lines = [
        "| model | optimizer | hotkernels acc % | torch acc % | hotkernels ms/step | torch ms/step | speedup |",
        "|" + "---|" * 7,
    ]
    for m in models:
        for o in optimizers:
            hk, pt = runs[(m, o, "hotkernels")], runs[(m, o, "torch")]
            hk_ms = statistics.median(r.ms_per_step for r in hk)
            pt_ms = statistics.median(r.ms_per_step for r in pt)
            torch_opt = o if hasattr(torch.optim, o) else f"{o} (hotkernels)"
            lines.append(
                f"| {m} | {o} / torch: {torch_opt} | {_mean_std([r.accuracy for r in hk])} | "
                f"{_mean_std([r.accuracy for r in pt])} | {hk_ms:.2f} | {pt_ms:.2f} | {pt_ms / hk_ms:.2f}x |"
            )
    return lines, runs


def plot_curves(runs: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({m for m, _, _ in runs})
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        for (mm, o, impl), rs in sorted(runs.items()):
            if mm == m and impl == "hotkernels":
                mean = [statistics.mean(c) for c in zip(*(r.curve for r in rs))]
                ax.plot(range(1, len(mean) + 1), mean, label=o)
        ax.set_title(f"{m}: test accuracy (hotkernels, mean over seeds)")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
