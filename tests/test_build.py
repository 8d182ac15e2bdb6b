"""The build: what _C reports, and the guard against loading under another torch."""

import subprocess
import sys

import torch

import hotkernels


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
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA") == hotkernels._C.with_cuda


def test_import_under_other_torch_fails_clearly():
    code = (
        "import torch, sys; torch.__version__ = '0.0.1'\n"
        "try:\n    import hotkernels\nexcept ImportError as e:\n    print(e); sys.exit(0)\n"
        "sys.exit('imported under the wrong torch')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"built against torch {torch.__version__}" in out.stdout and "torch 0.0.1 is installed" in out.stdout


