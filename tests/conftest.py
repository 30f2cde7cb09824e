import os

import pytest
import torch

# Without a GPU, Triton kernels run through the interpreter (must be set before triton is
# imported anywhere, since @triton.jit reads it at decoration time).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import mta_kernels as mk  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def backends_for(device: str) -> list[str]:
    return mk.available_backends(device)


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def force_backend(monkeypatch):
    """force_backend(name) sets MTA_BACKEND for the rest of the test."""

    def _force(name: str) -> None:
        monkeypatch.setenv("MTA_BACKEND", name)

    return _force
