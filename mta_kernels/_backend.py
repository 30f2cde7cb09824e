"""Backend choice, declared once per op and resolved once per device type.

Every public op declares its kernels in one :class:`Op` — ``{backend: fn}``, every ``fn``
with the same signature — and asks ``op.kernel(device)`` for the function to call. The
rules (vLLM's, see docs/architecture.md "Dispatch"):

* CUDA tensor -> the first of the op's GPU backends that can run (Triton, or CUDA C++ where
  it was measured faster); CPU tensor -> the C++ CPU op where one exists; else the torch
  reference.
* ``MTA_BACKEND=reference|triton|cuda|cpp`` forces one: a forced backend that the op lacks
  or that cannot run raises; an automatic choice that cannot run warns once, with the
  reason, and falls back to the reference.
* A call whose *arguments* a chosen kernel cannot take (e.g. more models than the mixing
  kernels have pointers for) goes through :meth:`Op.refuse`: it raises when that backend
  was forced, otherwise warns once with the reason, and the op takes its documented path.

The choice is cached per (op, device type, ``MTA_BACKEND``), so the per-call cost is one
environment read and one dict lookup; :func:`clear_backend_cache` forgets it (e.g. after
loading the extension by hand).
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch

from mta_kernels import _extension

BACKENDS = ("reference", "triton", "cuda", "cpp")

__all__ = [
    "BACKENDS",
    "Op",
    "available_backends",
    "clear_backend_cache",
    "registered_ops",
    "unsupported_reason",
    "warn_once",
]


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
def warn_once(message: str) -> None:
    """A ``RuntimeWarning`` the first time ``message`` comes up in this process."""
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _forced() -> str | None:
    forced = os.environ.get("MTA_BACKEND") or None
    if forced is not None and forced not in BACKENDS:
        raise ValueError(f"MTA_BACKEND={forced!r} is not one of {BACKENDS}")
    return forced


_REGISTRY: dict[str, Op] = {}
# (op name, device type, MTA_BACKEND) -> backend name
_CHOICES: dict[tuple[str, str, str | None], str] = {}


def clear_backend_cache() -> None:
    """Forget every cached backend choice (they are made again on the next call)."""
    _CHOICES.clear()


def registered_ops() -> dict[str, Op]:
    """Every op declared with :class:`Op`, by name."""
    return dict(_REGISTRY)


class Op:
    """One op's kernels: ``{backend: fn}``, each ``fn`` with one signature.

    Parameters
    ----------
    name : str
        The public name (``"sample"``), used in warnings and errors.
    kernels : mapping backend -> callable, ``"module:attribute"`` or ``"mta::op"``
        Must hold ``"reference"``. A string is resolved the first time that backend is
        chosen: a module path is imported then (Triton is only imported where it runs), an
        ``mta::`` name is that C++ op's default overload (registered by the extension).
    preferred : mapping device type -> backends
        Tried in order when nothing is forced (e.g. ``{"cuda": ("triton",), "cpu":
        ("cpp",)}``); the reference closes every list.

    Examples
    --------
    >>> op = Op("double", {"reference": lambda x: 2 * x})
    >>> op.kernel(torch.device("cpu"))(torch.ones(2))
    tensor([2., 2.])
    """

    def __init__(
        self,
        name: str,
        kernels: Mapping[str, Callable | str],
        preferred: Mapping[str, Sequence[str]] | None = None,
    ):
        if "reference" not in kernels:
            raise ValueError(f"op {name!r} declares no reference kernel")
        for backend in kernels:
            if backend not in BACKENDS:
                raise ValueError(f"op {name!r}: unknown backend {backend!r}; choose from {BACKENDS}")
        preferred = dict(preferred or {})
        for device_type, order in preferred.items():
            missing = [b for b in order if b not in kernels]
            if missing:
                raise ValueError(f"op {name!r} prefers {missing} on {device_type} but declares no such kernel")
        self.name = name
        self.kernels = dict(kernels)
        self.preferred = {k: tuple(v) for k, v in preferred.items()}
        self._fns: dict[str, Callable] = {}
        if name in _REGISTRY:
            raise ValueError(f"op {name!r} is declared twice")
        _REGISTRY[name] = self

    def __repr__(self) -> str:
        return f"Op({self.name!r}, kernels={sorted(self.kernels)}, preferred={self.preferred})"

    def backend(self, device: torch.device) -> str:
        """The backend this op uses on ``device`` (cached; see the module docstring)."""
        return _choose(self, device.type)

    def kernel(self, device: torch.device) -> Callable:
        """The function of :meth:`backend` for ``device``."""
        return self._fns[_choose(self, device.type)]

    def fn(self, backend: str) -> Callable:
        """The kernel of ``backend`` (imported if needed), whatever the device."""
        if backend not in self._fns:
            target = self.kernels[backend]
            if isinstance(target, str) and target.startswith("mta::"):
                target = getattr(torch.ops.mta, target[len("mta::"):]).default
            elif isinstance(target, str):
                module, attribute = target.split(":")
                target = getattr(importlib.import_module(module), attribute)
            self._fns[backend] = target
        return self._fns[backend]

    def refuse(self, backend: str, reason: str) -> None:
        """``backend`` cannot take this call's arguments: raise if it was forced, else warn once."""
        if _forced() == backend:
            raise RuntimeError(f"MTA_BACKEND={backend!r}: {self.name} cannot run this call on it: {reason}")
        warn_once(f"mta_kernels: {self.name} cannot use the {backend} kernel for this call ({reason}); "
                  "using its fallback path")

    def _select(self, device_type: str, forced: str | None) -> str:
        device = torch.device(device_type)
        if forced is not None:
            if forced not in self.kernels:
                raise RuntimeError(f"MTA_BACKEND={forced!r}: this op has no {forced} kernel "
                                   f"({self.name} has {sorted(self.kernels)})")
            reason = unsupported_reason(forced, device)
            if reason is not None:
                raise RuntimeError(f"MTA_BACKEND={forced!r} cannot run {self.name} on {device}: {reason}")
            return forced
        preferred = self.preferred.get(device_type, ())
        for backend in preferred:
            if unsupported_reason(backend, device) is None:
                return backend
        if preferred:
            first = preferred[0]
            if first == "cpp":
                _extension.warn_missing_extension()
            else:
                warn_once(f"mta_kernels: no kernel of {preferred} can run {self.name} on {device} "
                          f"({unsupported_reason(first, device)}); using the torch reference")
        return "reference"


@torch._dynamo.assume_constant_result  # a per-device choice: torch.compile need not trace it
def _choose(op: Op, device_type: str) -> str:
    forced = os.environ.get("MTA_BACKEND") or None  # one environment read per call (~1 µs)
    key = (op.name, device_type, forced)
    backend = _CHOICES.get(key)
    if backend is None:
        if forced is not None and forced not in BACKENDS:
            raise ValueError(f"MTA_BACKEND={forced!r} is not one of {BACKENDS}")
        backend = op._select(device_type, forced)
        op.fn(backend)  # import now: a traced caller only looks it up
        # Whether forced Triton can run on the CPU depends on TRITON_INTERPRET, which tests
        # toggle: that choice is made again at every call instead of cached.
        if not (forced == "triton" and device_type != "cuda"):
            _CHOICES[key] = backend
    return backend
