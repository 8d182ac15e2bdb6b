"""The README's Layout section holds: every op family's faces are where its name says, each host op
registers once for every device through its stubs, and no device file registers an op itself."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
FAMILIES = ["mish", "pool", "conv2d", "lstm", "optim"]


@pytest.mark.parametrize("op", FAMILIES)
def test_each_face_of_a_family_is_found_by_its_name(op):
    python = ROOT / "python" / "hotkernels"
    faces = [
        CSRC / f"{op}.h",
        CSRC / f"{op}.cpp",
        CSRC / "cpu" / f"{op}.cpp",
        CSRC / "cpu" / "simd" / f"{op}.h",
        CSRC / "cpu" / "simd" / f"{op}.cpp",
        CSRC / "cuda" / f"{op}.cu",
        CSRC / "math" / f"{op}.h",
        python / "ops" / f"{op}.py",
        python / ("optim" if op == "optim" else "nn") / ("__init__.py" if op == "optim" else f"{op}.py"),
        python / "bench" / f"{op}.py",
        ROOT / "tests" / f"test_{op}.py",
    ]
    assert [str(f.relative_to(ROOT)) for f in faces if not f.is_file()] == []
    schemas = (CSRC / "schemas.cpp").read_text()
    assert re.search(rf"^\s*// {op}", schemas, re.M) or (op == "optim" and "// optimizers:" in schemas)


@pytest.mark.parametrize("op", FAMILIES)
def test_the_host_op_registers_and_the_devices_only_fill_its_stubs(op):
    host = (CSRC / f"{op}.cpp").read_text()
    assert "HK_DEVICE_OPS(" in host and "HK_DEFINE_STUB(" in host
    assert "HK_DECLARE_STUB(" in (CSRC / f"{op}.h").read_text()
    for device, source in (("cpu", CSRC / "cpu" / f"{op}.cpp"), ("cuda", CSRC / "cuda" / f"{op}.cu")):
        text = source.read_text()
        assert "TORCH_LIBRARY_IMPL" not in text, source
        assert re.search(rf"HK_REGISTER_STUB\([\w:]+, {device},", text), source
