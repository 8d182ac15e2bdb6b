"""Smoke tests of `python -m hotkernels` at tiny sizes."""

import json
import math
import subprocess
import sys

import pytest
import torch

from hotkernels import bench
from hotkernels.bench import report


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotkernels", *args], capture_output=True, text=True, timeout=600)


def test_info():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    assert "cpu isa" in out.stdout and "torch (built against)" in out.stdout


def test_bench_quick_writes_table_json_and_markdown(tmp_path):
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    out = run_cli("bench", "--ops", "mish", "--device", "cpu", "--quick", "--rounds", "1", "--sweeps", "2", "--json",
                  str(js), "--markdown", str(md))
    assert out.returncode == 0, out.stderr
    assert "medians of 2 interleaved rounds (1 in each of 2 sweeps over the cases)" in out.stdout
    assert "| mish/cpu/forward float32 1M | torch F.mish |" in out.stdout
    rec = json.loads(js.read_text())
    assert {r["name"] for r in rec["results"]} == {"forward float32 1M", "forward in place float32 1M",
                                                   "forward+backward float32 1M"}
    assert all(r["max_error"] < 1e-5 and r["ms"]["hotkernels"] > 0 for r in rec["results"])
    assert rec["machine"]["cpu_isa"] in out.stdout and rec["quick"] and (rec["rounds"], rec["sweeps"]) == (1, 2)
    assert md.read_text() == report.render(rec)
    assert "| case | baseline | baseline ms | hotkernels ms |" in md.read_text()
    # `report` renders the JSON again and embeds it in a README between the Markdown's markers
    readme, again = tmp_path / "README.md", tmp_path / "again" / "r.md"
    again.parent.mkdir()
    readme.write_text("# x\n<!-- bench:r begin -->\nstale\n<!-- bench:r end -->\nrest\n")
    out = run_cli("report", str(js), "--markdown", str(again), "--readme", str(readme))
    assert out.returncode == 0, out.stderr
    assert again.read_text() == md.read_text()
    assert report.embedded(readme.read_text()) == {"r": md.read_text()} and readme.read_text().endswith("rest\n")
    out = run_cli("report", str(js), "--readme", str(tmp_path / "again" / "r.md"))
    assert out.returncode != 0 and "no '<!-- bench:r begin -->'" in out.stderr


def test_bench_rejects_sweeps_below_one():
    out = run_cli("bench", "--ops", "mish", "--sweeps", "0")
    assert out.returncode != 0 and "--sweeps: expected a positive count, got 0" in out.stderr


def test_bench_rejects_unknown_family():
    out = run_cli("bench", "--ops", "nope")
    assert out.returncode != 0 and "unknown op families ['nope']" in out.stderr


@pytest.mark.parametrize("family", sorted(bench.families()))
def test_every_case_agrees_with_torch(family):
    """Each bench case's hotkernels implementation computes what its reference does (the other
    implementations, composed ops or third-party variants, are there for their times), and its
    baselines are named for what they are: a torch built-in, torch_optimizer, or nothing else."""
    for case in bench.families()[family]("cpu", True):
        impls = case.setup()
        assert bench.max_error(impls["hotkernels"](), impls[case.reference_impl]()) < 1e-3, case.id
        assert case.baselines and all(b.startswith("torch ") or b == "torch_optimizer" for b in case.baselines)


def test_train_smoke():
    out = run_cli("train", "--epochs", "1", "--seeds", "1", "--optimizers", "Adam,Ranger")
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| cnn") or line.startswith("| lstm")]
    assert len(rows) == 4 and all("x |" in r for r in rows)


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="needs an AVX2 CPU")
def test_bench_isa_caps_both_sides_and_models_report_their_losses(tmp_path):
    """`--isa avx2` reruns the bench with hotkernels and torch's libraries capped at AVX2 (the record
    says so), and `--models` adds the whole-model training steps, whose losses after their steps are
    recorded and rendered for both models."""
    js = tmp_path / "r.json"
    out = run_cli("bench", "--isa", "avx2", "--ops", "mish", "--models", "--device", "cpu", "--quick", "--rounds", "1",
                  "--json", str(js))
    assert out.returncode == 0, out.stderr
    rec = json.loads(js.read_text())
    m = rec["machine"]
    assert (m["cpu_isa"], m["torch_cpu_isa"]) == ("avx2", "AVX2")
    assert m["caps"] == {"HOTKERNELS_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                         "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    assert {r["family"] for r in rec["results"]} == {"mish", "models"}
    trained = [r for r in rec["results"] if r["family"] == "models"]
    assert len(trained) == 2
    for r in trained:
        assert r["steps"] == 1 + bench.WARMUP + 1 + 1 and set(r["losses"]) == set(r["ms"])
        assert all(math.isfinite(loss) for loss in r["losses"].values())
        assert f"Loss of training step {r['steps']} (after {r['steps'] - 1} updates), models/cpu/{r['name']}: " \
            in out.stdout
    assert not any(r["losses"] for r in rec["results"] if r["family"] == "mish")
