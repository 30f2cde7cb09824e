import os
import signal
import threading

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


# MTA_TEST_TIMEOUT=<seconds>: fail any test that runs longer (tools/gpu_session.sh sets it,
# so one slow or stuck test cannot eat the GPU budget). Python-level: a kernel stuck inside
# one CUDA call is caught by the script's outer timeout instead. Off by default, because
# math-verify's own alarm (mta.answers on the main thread) shares SIGALRM.
_TEST_TIMEOUT = float(os.environ.get("MTA_TEST_TIMEOUT") or 0)


@pytest.fixture(autouse=_TEST_TIMEOUT > 0)
def _per_test_timeout():
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        pytest.fail(f"timed out after {_TEST_TIMEOUT:g} s (MTA_TEST_TIMEOUT)", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, _TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
