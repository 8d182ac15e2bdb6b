"""Command line: ``python -m hotkernels info``, ``bench``, ``report`` and ``train``."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys

import torch

import hotkernels
from hotkernels import bench, train
from hotkernels.bench import report
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


def _plot(results: list[bench.Result], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("hotkernels bench: --plot needs matplotlib (pip install 'hotkernels[plot]')")
    results = [r for r in results if r.speedup is not None]
    names = [r.id for r in results]
    speedups = [r.speedup for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(names) + 1.2))
    ax.barh(names, speedups, color=["tab:green" if s >= 1 else "tab:red" for s in speedups])
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup over the baseline (x)")
    ax.set_title(_machine(), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _machine() -> str:
    return report.machine_line(report.machine_info())


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {n}")
    return n


def _write(path: str, text: str) -> None:
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def _capped_rerun(args: argparse.Namespace) -> int | None:
    """``bench --isa X``: torch's libraries read their caps once, when they load, so a run capped at
    X is this command again in a subprocess whose environment sets them. Returns its exit status, or
    None where this process already runs under those caps (it is that subprocess) and benches."""
    caps = report.ISA_CAPS[args.isa]
    if all(os.environ.get(k) == v for k, v in caps.items()):
        if hotkernels._library.cpu_isa() != args.isa:
            sys.exit(f"hotkernels bench: --isa {args.isa}: this CPU's best is {hotkernels._library.cpu_isa()}")
        return None
    return subprocess.call([sys.executable, "-m", "hotkernels", *args.argv], env={**os.environ, **caps})


def _bench(args: argparse.Namespace) -> int:
    if args.isa:
        status = _capped_rerun(args)
        if status is not None:
            return status
    families = bench.families()
    names = (args.ops.split(",") if args.ops else []) + (["models"] if args.models else [])
    names = list(dict.fromkeys(names)) or list(families)
    unknown = sorted(set(names) - set(families))
    if unknown:
        sys.exit(f"hotkernels bench: unknown op families {unknown}; choose from {sorted(families)}")
    rounds = args.rounds or (5 if args.quick else 15)
    devices = _devices(args.device)
    cases = {(d, n): families[n](d, args.quick) for d in devices for n in names}
    total, done = args.sweeps * sum(map(len, cases.values())), 0
    sweeps: dict[tuple[str, str, int], list[bench.Sweep]] = {}  # by device, family and place in it
    probes: dict[str, list[tuple[float, float | None, float | None]]] = {d: [] for d in devices}
    for _ in range(args.sweeps):
        for device in devices:
            # The ceilings are probed before each family and after the last, so that the fastest
            # probe is of the least load the shared machine had over the whole run.
            for name in names:
                progress(done, total, f"probing the ceilings of {device}")
                probes[device].append(bench.probe(device, args.quick))
                for i, case in enumerate(cases[device, name]):
                    progress(done, total, case.id)
                    sweeps.setdefault((device, name, i), []).append(bench.time_case(case, rounds))
                    done += 1
            progress(done, total, f"probing the ceilings of {device}")
            probes[device].append(bench.probe(device, args.quick))
    progress(total, total, "done")
    results = [bench.combine(case, sweeps[device, name, i])
               for (device, name), case_list in cases.items() for i, case in enumerate(case_list)]
    ceilings = {d: bench.Ceilings([m for m, _, _ in p], [f for _, f, _ in p if f is not None],
                                  round_trip_probes=[r for _, _, r in p if r is not None]) for d, p in probes.items()}
    missing = sorted({b for r in results if r.baseline is None for b in r.baselines})
    if missing:
        print(f"hotkernels bench: {', '.join(missing)} not installed: rows whose baseline it is have no speedup "
              f"(pip install torch-optimizer, or the hotkernels[bench] extra)", file=sys.stderr)
    over = report.above_ceiling(results, ceilings)
    if over:
        print(f"hotkernels bench: WARNING: {len(over)} cases ran faster than their floor (bytes or flops "
              f"miscounted, or a ceiling probe ran under load): "
              f"{', '.join(r.id for r in over)}", file=sys.stderr)
    rec = report.record(results, ceilings, shlex.join(["python", "-m", "hotkernels", *args.argv]), rounds,
                        args.quick, args.sweeps)
    print("\n" + report.render(rec))
    if args.json:
        _write(args.json, json.dumps(rec, indent=1) + "\n")
    if args.markdown:
        _write(args.markdown, report.render(rec))
    if args.plot:
        _plot(results, args.plot)
    return 0


def _report(args: argparse.Namespace) -> int:
    with open(args.results) as f:
        rec = json.load(f)
    markdown = args.markdown or str(pathlib.Path(args.results).with_suffix(".md"))
    _write(markdown, report.render(rec))
    if args.readme:
        path = pathlib.Path(args.readme)
        try:
            text = report.embed(path.read_text(), pathlib.Path(markdown).stem, report.render(rec))
        except ValueError as e:
            sys.exit(f"hotkernels report: {args.readme}: {e}")
        path.write_text(text)
    return 0


def _train(args: argparse.Namespace) -> int:
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
    b = sub.add_parser("bench", help="time every op and optimizer against its baseline (torch, or torch_optimizer)")
    b.add_argument("--ops", help="comma-separated op families (default: all)")
    b.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    b.add_argument("--models", action="store_true",
                   help="the whole-model training steps (alone, or beside the --ops families)")
    b.add_argument("--isa", choices=sorted(report.ISA_CAPS),
                   help="cap hotkernels and torch (ATen, oneDNN, MKL) at this CPU instruction set")
    b.add_argument("--quick", action="store_true", help="small sizes and few rounds")
    b.add_argument("--rounds", type=int, help="timed rounds per implementation (median reported)")
    b.add_argument("--sweeps", type=_positive, default=1,
                   help="times to run every case, each time for --rounds rounds (the median is of all of them): "
                        "a spell of load on a shared machine then slows a part of a case's rounds, not all")
    b.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    b.add_argument("--markdown", metavar="PATH", help="also write the table and the summary against the targets as Markdown")
    b.add_argument("--plot", metavar="PATH", help="also draw the speedups as a PNG chart (needs matplotlib)")
    b.set_defaults(func=_bench)
    r = sub.add_parser("report", help="render a bench results JSON as Markdown, and embed it in a README")
    r.add_argument("results", metavar="RESULTS.json")
    r.add_argument("--markdown", metavar="PATH", help="where to write the Markdown (default: RESULTS.md)")
    r.add_argument("--readme", metavar="PATH",
                   help="also replace the block between <!-- bench:NAME begin/end --> in PATH (NAME: the Markdown's stem)")
    r.set_defaults(func=_report)
    t = sub.add_parser("train", help="the optimizer shoot-out on scikit-learn's digits, hotkernels beside torch")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--seeds", type=int, default=2)
    t.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    t.add_argument("--models", default=",".join(train.MODELS), help=f"comma-separated: {', '.join(train.MODELS)}")
    t.add_argument("--optimizers", default=",".join(train.OPTIMIZERS),
                   help="comma-separated hotkernels.optim names (default: each optimizer once)")
    t.add_argument("--plot", metavar="PATH", help="also draw test-accuracy curves as a PNG (needs matplotlib)")
    t.set_defaults(func=_train)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
