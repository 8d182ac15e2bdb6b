"""Command line: ``python -m hotkernels info``, ``bench`` and ``train``."""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

import hotkernels
from hotkernels import bench
from hotkernels._progress import progress


def _info(args: argparse.Namespace) -> int:
    for key, value in hotkernels.build_info().items():
        print(f"{key:>22}: {value}")
    return 0


def _devices(choice: str) -> list[str]:
    cuda = torch.cuda.is_available() and hotkernels._library.with_cuda
    if choice == "all":
        return ["cpu"] + (["cuda"] if cuda else [])
    if choice == "cuda" and not cuda:
        sys.exit("hotkernels bench: --device cuda needs a GPU and hotkernels built with CUDA")
    return [choice]


def _table(results: list[bench.Result], ceilings: dict[str, bench.Ceilings]) -> list[str]:
    head = "| case | torch ms | hotkernels ms | speedup | max error | hotkernels rate | others ms |"
    lines = [head, "|" + "---|" * 7]
    for r in results:
        others = ", ".join(f"{k} {v:.3f}" for k, v in r.ms.items() if k not in ("torch", "hotkernels")) or "-"
        lines.append(
            f"| {r.case.id} | {r.ms['torch']:.3f} | {r.ms['hotkernels']:.3f} | {r.speedup:.2f}x | "
            f"{r.max_error:.2e} | {r.rate(ceilings.get(r.case.device))} | {others} |"
        )
    lines.append("")
    for device, c in ceilings.items():
        lines.append(f"Ceilings on {device}: large copy {c.copy_gbs:.1f} GB/s, float32 matmul {c.matmul_gflops:.1f} GFLOP/s  ")
    return lines


def _plot(results: list[bench.Result], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("hotkernels bench: --plot needs matplotlib (pip install 'hotkernels[plot]')")
    names = [r.case.id for r in results]
    speedups = [r.speedup for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1.2))
    ax.barh(names, speedups, color=["tab:green" if s >= 1 else "tab:red" for s in speedups])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over torch (x)")
    ax.set_title(_machine(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {torch.get_num_threads()} threads, CPU ISA {hotkernels._library.cpu_isa()}{gpu}; "
            f"torch {torch.__version__}, hotkernels {hotkernels.__version__}")


def _bench(args: argparse.Namespace) -> int:
    families = bench.families()
    names = args.ops.split(",") if args.ops else list(families)
    unknown = sorted(set(names) - set(families))
    if unknown:
        sys.exit(f"hotkernels bench: unknown op families {unknown}; choose from {sorted(families)}")
    rounds = args.rounds or (5 if args.quick else 15)
    results: list[bench.Result] = []
    ceilings: dict[str, bench.Ceilings] = {}
    cases = [c for d in _devices(args.device) for n in names for c in families[n](d, args.quick)]
    for device in _devices(args.device):
        progress(0, len(cases), f"measuring the ceilings of {device}")
        ceilings[device] = bench.Ceilings.measure(device, args.quick)
    for i, case in enumerate(cases):
        progress(i, len(cases), case.id)
        results.append(bench.run(case, rounds))
    progress(len(cases), len(cases), "done")
    lines = _table(results, ceilings)
    print(f"\n{_machine()}\n")
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{_machine()}\n\n" + "\n".join(lines) + "\n")
    if args.json:
        rows = [
            {"case": r.case.id, "ms": r.ms, "speedup": r.speedup, "max_error": r.max_error,
             "rate": r.rate(ceilings.get(r.case.device))}
            for r in results
        ]
        with open(args.json, "w") as f:
            ceil = {d: vars(c) for d, c in ceilings.items()}
            json.dump({"machine": _machine(), "ceilings": ceil, "results": rows}, f, indent=2)
    if args.plot:
        _plot(results, args.plot)
    return 0


def _train(args: argparse.Namespace) -> int:
    from hotkernels import train

    device = _devices(args.device)[0] if args.device != "all" else "cpu"
    models = args.models.split(",")
    optimizers = args.optimizers.split(",")
    lines, runs = train.shootout(args.epochs, args.seeds, device, models, optimizers)
    print(f"\n{_machine()}; digits, {args.epochs} epochs, {args.seeds} seeds, lr {train.LR}\n")
    print("\n".join(lines))
    if args.plot:
        train.plot_curves(runs, args.plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hotkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print how hotkernels was built").set_defaults(func=_info)
    b = sub.add_parser("bench", help="time every op against its PyTorch built-in")
    b.add_argument("--ops", help="comma-separated op families (default: all)")
    b.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    b.add_argument("--quick", action="store_true", help="small sizes and few rounds")
    b.add_argument("--rounds", type=int, help="timed rounds per implementation (median reported)")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    b.add_argument("--plot", metavar="PATH", help="also draw the speedups as a PNG chart (needs matplotlib)")
    b.set_defaults(func=_bench)
    t = sub.add_parser("train", help="the optimizer shoot-out on scikit-learn's digits, hotkernels beside torch")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--seeds", type=int, default=2)
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    t.add_argument("--models", default="cnn,lstm", help="comma-separated: cnn, lstm")
    t.add_argument("--optimizers", default="Adam,RAdam,LAMB,Lookahead,Ranger,Ralamb,RangerLars,NovoGrad")
    t.add_argument("--plot", metavar="PATH", help="also draw test-accuracy curves as a PNG (needs matplotlib)")
    t.set_defaults(func=_train)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
