"""Backend choice: explicit, testable, overridable with ``MTA_BACKEND``.

CUDA tensor -> the fastest GPU kernel (Triton, or CUDA C++ where registered as faster);
CPU tensor -> the C++ CPU op where one exists, else the torch reference.
``MTA_BACKEND=reference|triton|cuda|cpp`` forces one: an unsupported forced backend raises,
an unsupported automatic choice warns once and falls back to the reference.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch

from mta_kernels import _extension

BACKENDS = ("reference", "triton", "cuda", "cpp")

__all__ = ["BACKENDS", "available_backends", "select_backend", "unsupported_reason"]


@functools.lru_cache(maxsize=None)
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def unsupported_reason(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot run on ``device`` (None when it can)."""
    if backend == "reference":
        return None
    if backend == "triton":
        if not _triton_importable():
            return "triton is not installed"
        if device.type != "cuda" and not _interpreting():
            return "triton kernels need a CUDA tensor (or TRITON_INTERPRET=1 for CPU testing)"
        return None
    if backend == "cpp":
        if not _extension.extension_loaded():
            return f"C++ extension not loaded: {_extension.extension_error()}"
        if device.type != "cpu":
            return "the cpp backend runs CPU tensors only"
        return None
    if backend == "cuda":
        if device.type != "cuda":
            return "the cuda backend needs a CUDA tensor"
        if not _extension.extension_loaded():
            return f"C++ extension not loaded: {_extension.extension_error()}"
        if not _extension.extension_has_cuda():
            return "the extension was built without CUDA kernels"
        return None
    return f"unknown backend {backend!r}; choose one of {BACKENDS}"


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device``, fastest first."""
    device = torch.device(device)
    order = ("cuda", "triton", "reference") if device.type == "cuda" else ("cpp", "triton", "reference")
    return [b for b in order if unsupported_reason(b, device) is None]


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def select_backend(device: torch.device, preferred: tuple[str, ...], implemented: tuple[str, ...]) -> str:
    """Pick the backend for one call.

    ``preferred`` lists the backends tried automatically for ``device``, fastest first;
    ``implemented`` every kernel the op has (any of them can be forced, e.g. Triton on CPU
    tensors under ``TRITON_INTERPRET=1`` for testing).
    """
    forced = os.environ.get("MTA_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"MTA_BACKEND={forced!r} is not one of {BACKENDS}")
        if forced != "reference" and forced not in implemented:
            raise RuntimeError(f"MTA_BACKEND={forced!r}: this op has no {forced} kernel")
        reason = unsupported_reason(forced, device)
        if reason is not None:
            raise RuntimeError(f"MTA_BACKEND={forced!r} cannot run on {device}: {reason}")
        return forced
    for backend in preferred:
        if unsupported_reason(backend, device) is None:
            return backend
    if device.type == "cpu" and "cpp" in preferred:
        _extension.warn_missing_extension()
    elif preferred:
        _warn_once(
            f"mta_kernels: no kernel of {preferred} can run on {device} "
            f"({unsupported_reason(preferred[0], device)}); using the torch reference"
        )
    return "reference"
