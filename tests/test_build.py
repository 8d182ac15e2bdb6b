"""The build: what the library reports, that it needs no Python, and the guard against loading under
another torch."""

import shutil
import subprocess
import sys

import pytest
import torch

import hotkernels
from hotkernels import _library


def test_build_info():
    info = hotkernels.build_info()
    assert info["torch (built against)"] == torch.__version__
    assert info["cpu isa"] in ("base", "avx2", "avx512")
    assert isinstance(info["cuda kernels"], bool)
    if torch.version.cuda is None:
        assert not info["cuda kernels"]


def test_ops_registered_for_every_built_device():
    for name in ("mish", "mish_", "mish_backward"):
        op = getattr(torch.ops.hotkernels, name).default
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA") == hotkernels._library.with_cuda


def test_import_under_other_torch_fails_clearly():
    code = (
        "import torch, sys; torch.__version__ = '0.0.1'\n"
        "try:\n    import hotkernels\nexcept ImportError as e:\n    print(e); sys.exit(0)\n"
        "sys.exit('imported under the wrong torch')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"built against torch {torch.__version__}" in out.stdout and "torch 0.0.1 is installed" in out.stdout




@pytest.mark.skipif(shutil.which("nm") is None or shutil.which("readelf") is None, reason="needs binutils")
def test_library_needs_no_python():
    """One build serves every Python version (.ci/gpu-bundle relies on it): libhotkernels.so links
    neither libpython nor torch's Python bindings, and uses no Python C API symbol."""
    dynamic = subprocess.run(["readelf", "-d", str(_library.PATH)], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert "libtorch_cpu.so" in needed and "libc10.so" in needed
    assert not [n for n in needed if "python" in n], needed
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(_library.PATH)], capture_output=True, text=True,
                               check=True).stdout.split()
    assert not [s for s in undefined if s.startswith(("Py", "_Py"))]
