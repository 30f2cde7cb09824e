"""Ahead-of-time compilation of Triton kernels for a GPU target, no GPU needed.

The interpreter (TRITON_INTERPRET=1) checks the kernels' logic on CPU but accepts code the
real compiler rejects; compiling for sm_80 / sm_90 (Triton ships ptxas) closes that gap in
CI. The compile tests share this helper:

* :func:`signature` types every argument of a ``@triton.jit`` kernel, by name, from an
  example of what the launcher passes (a tensor or a dtype: a pointer to that dtype; an
  int: i32; a float: fp32), or marks it constexpr;
* :func:`compile_for_gpu` compiles one variant and checks the machine code came out;
* :func:`run_without_interpreter` runs a test module's compile function in a fresh
  interpreter: this test session imported the kernels interpreted, and a kernel is
  decorated for one mode when its module is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["TRITON_TYPES", "compile_for_gpu", "run_without_interpreter", "signature", "triton_type"]

TRITON_TYPES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.int64: "i64",
    torch.int32: "i32",
    torch.uint8: "u8",
}


def triton_type(example) -> str:
    """The Triton signature type of one launch argument, from an example of it."""
    if isinstance(example, torch.Tensor):
        example = example.dtype
    if isinstance(example, torch.dtype):
        return "*" + TRITON_TYPES[example]
    if isinstance(example, bool):
        return "i1"
    if isinstance(example, int):
        return "i32" if -(2**31) <= example < 2**31 else "i64"
    if isinstance(example, float):
        return "fp32"
    raise TypeError(f"no Triton type for {example!r}")


def signature(kernel, examples: Mapping[str, object], constexprs: Mapping[str, object]) -> dict[str, str]:
    """``{argument: Triton type}`` for every argument of ``kernel``, in order.

    Parameters
    ----------
    kernel : triton.JITFunction
    examples : mapping
        Argument name -> an example value (see :func:`triton_type`); may name arguments
        the kernel does not take, so one mapping serves a family of kernels.
    constexprs : mapping
        Argument name -> its compile-time value; these are typed ``constexpr``.
    """
    missing = [name for name in kernel.arg_names if name not in constexprs and name not in examples]
    if missing:
        raise KeyError(f"{kernel.fn.__name__}: no example or constexpr for {missing}")
    return {
        name: "constexpr" if name in constexprs else triton_type(examples[name]) for name in kernel.arg_names
    }


def compile_for_gpu(kernel, examples, constexprs, capability: int, num_warps: int) -> None:
    """Compile one variant of ``kernel`` for ``sm_<capability>``; raises if no cubin came out."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(fn=kernel, signature=signature(kernel, examples, constexprs), constexprs=dict(constexprs))
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})
    assert len(compiled.asm["cubin"]) > 0 and f"sm_{capability}" in compiled.asm["ptx"]


def run_without_interpreter(function: str, *args) -> str:
    """Run ``module:function(*args)`` (a module of this folder, string arguments) in a fresh
    Python without TRITON_INTERPRET; asserts it succeeded and returns its stdout."""
    module, name = function.split(":")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    code = f"import sys; from {module} import {name}; {name}(*sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
