"""Benchmark runner: time op families, write ``results.json``, ``results.md`` and plots.

Usage::

    python benchmarks/run.py [--family sampling] [--quick | --full] [--out DIR]

Without ``--out`` results go to ``benchmarks/results/local/<device>-<date>/`` (git-ignored);
commit a run by writing it to ``benchmarks/results/<name>/`` instead. Without ``--quick``
or ``--full`` the mode is ``full`` on a GPU and ``quick`` on the CPU.

A family is a module in :data:`FAMILIES` exposing

* ``run(device, mode, bandwidth) -> list[dict]``: one row per (shape, implementation),
  each with ``impl``, ``median_us``, ``p20_us``, ``p80_us``;
* ``markdown(rows) -> str``: the rows as a markdown table;
* ``plot(rows, path, title)``: a PNG.

The runner measures the copy bandwidth once, passes it to every family for its memory
floor, and adds the environment keys (device, commit, versions, date) to every row.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks`, `mta_kernels` and `mta` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks import harness

FAMILIES = {
    "sampling": "benchmarks.bench_sampling",
    "rl": "benchmarks.bench_rl",
    "logprobs": "benchmarks.bench_logprobs",
    "generate": "benchmarks.bench_generate",
    "braking": "benchmarks.bench_braking",
    "sbt": "benchmarks.bench_sbt",
    "mixing": "benchmarks.bench_mixing",
    "overhead": "benchmarks.bench_overhead",
    "inference": "benchmarks.bench_inference",
    "wsd": "benchmarks.bench_wsd",
    "train": "benchmarks.bench_train",
}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmarks named on the command line; return what was written to JSON.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``).

    Returns
    -------
    dict
        ``{"meta": {...}, "rows": [...]}``, as in ``results.json``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--family", action="append", choices=sorted(FAMILIES),
        help="op family to run (repeatable; default: all)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="few small shapes, about a minute on two CPU cores")
    size.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="every shape of the DESIGN benchmark grid")
    parser.add_argument("--out", type=Path, help="output directory")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mode = args.mode or ("full" if device.type == "cuda" else "quick")
    env = harness.environment(device)
    out = args.out or (
        harness.REPO_ROOT / "benchmarks" / "results" / "local" / f"{harness.slug(env['device'])}-{env['date']}"
    )
    out.mkdir(parents=True, exist_ok=True)

    bandwidth = harness.copy_bandwidth(device)
    meta = {**env, "mode": mode, "copy_bandwidth_GBps": bandwidth / 1e9}
    header = (
        f"{env['device']} · commit {env['commit']} · torch {env['torch']} · "
        f"triton {env['triton']} · {env['date']} · copy bandwidth {bandwidth / 1e9:.1f} GB/s"
    )
    rows, sections = [], [f"# Benchmarks ({mode})\n\n{header}\n"]
    for family in args.family or sorted(FAMILIES):
        module = importlib.import_module(FAMILIES[family])
        family_rows = [{**env, **row} for row in module.run(device, mode, bandwidth)]
        module.plot(family_rows, out / f"{family}.png", f"{family} — {header}")
        table = module.markdown(family_rows)
        sections.append(f"## {family}\n\n{table}\n\n![{family}]({family}.png)\n")
        print(f"\n## {family}  ({header})\n\n{table}\n")
        rows += family_rows

    results = {"meta": meta, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text("\n".join(sections))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
