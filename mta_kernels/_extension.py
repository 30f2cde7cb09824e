"""Lazy loading of the compiled extension ``mta_kernels._C``.

The extension registers the ``torch.ops.mta`` ops (C++ CPU bodies, and CUDA bodies when it
was built with CUDA). Without it the package still works through the torch reference; the
first call that would have used it warns once, naming every place it looked.
"""

from __future__ import annotations

import functools
import glob
import os
import warnings

import torch

__all__ = ["extension_loaded", "extension_has_cuda", "extension_error"]

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def _load() -> tuple[bool, str]:
    if os.environ.get("MTA_DISABLE_EXTENSION") == "1":
        return False, "MTA_DISABLE_EXTENSION=1"
    candidates = sorted(glob.glob(os.path.join(_HERE, "_C*.so")) + glob.glob(os.path.join(_HERE, "_C*.pyd")))
    if not candidates:
        return False, (
            f"no compiled extension found in {_HERE} (looked for _C*.so); "
            f"build it with `pip install -e .` (torch {torch.__version__})"
        )
    errors = []
    for path in candidates:
        try:
            torch.ops.load_library(path)
        except OSError as exc:  # ABI mismatch, missing CUDA runtime, ...
            errors.append(f"{path}: {exc}")
            continue
        from mta_kernels import _ops  # the fake impls need the schemas just loaded

        _ops.register_fakes()
        return True, path
    cap = (
        f", GPU capability {torch.cuda.get_device_capability()}" if torch.cuda.is_available() else ""
    )
    return False, f"failed to load the extension (torch {torch.__version__}{cap}): " + "; ".join(errors)


def extension_loaded() -> bool:
    """True when ``mta_kernels._C`` is loaded and its ops are registered."""
    return _load()[0]


def extension_error() -> str | None:
    """Why the extension is not loaded (None when it is)."""
    ok, msg = _load()
    return None if ok else msg


@functools.lru_cache(maxsize=None)
def extension_has_cuda() -> bool:
    """True when the loaded extension carries CUDA kernels."""
    if not extension_loaded():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("mta::sample", "CUDA")


@functools.lru_cache(maxsize=None)
def warn_missing_extension() -> None:
    warnings.warn(
        f"mta_kernels: C++ extension unavailable, using the torch reference ({extension_error()})",
        RuntimeWarning,
        stacklevel=3,
    )
