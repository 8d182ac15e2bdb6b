"""Options of the pytest-benchmark driver: ``--bench-quick`` (the small sizes of ``python -m
hotkernels bench --quick``) and ``--bench-rounds``."""

import pytest
import torch

import hotkernels
from hotkernels import bench

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and hotkernels._library.with_cuda else [])


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hotkernels bench")
    group.addoption("--bench-quick", action="store_true", help="small sizes, as `python -m hotkernels bench --quick`")
    group.addoption("--bench-rounds", type=int, help="timed rounds per implementation (default 15; 5 with --bench-quick)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrizes ``case`` over every case of every op family on every device present."""
    if "case" in metafunc.fixturenames:
        quick = metafunc.config.getoption("--bench-quick")
        cases = [c for d in DEVICES for family in bench.families().values() for c in family(d, quick)]
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture
def rounds(request: pytest.FixtureRequest) -> int:
    config = request.config
    return config.getoption("--bench-rounds") or (5 if config.getoption("--bench-quick") else 15)
