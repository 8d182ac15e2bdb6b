"""Shared pytest fixtures: every op test runs on the CPU and, when a GPU is present, on CUDA."""

import pytest
import torch

import hotkernels

CUDA = torch.cuda.is_available() and hotkernels._C.with_cuda

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a GPU and hotkernels built with CUDA")),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
