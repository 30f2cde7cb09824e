"""Evaluation throughput on a local Ray cluster: two actors against one, the same items.

    python benchmarks/ray_eval_scaling.py [--model smollm2|tiny] [--items 16] [--batch-size 2]
        [--max-new-tokens 32] [--out benchmarks/results/ray-eval-scaling]

Starts a local Ray cluster with 2 CPU slots, then for 1 and 2 actors (1 torch thread each):
starts the actors and waits until each has loaded its model (not timed), then times
``run_eval`` of greedy decoding over the same items into a fresh directory (timed: work
sent, generated, checked, written by the driver). Prints and writes ``ray_eval_scaling.md``
/ ``.json`` with items/s, the speed-up and the load average before and after (other users
of a shared machine take cores from the actors: read the speed-up with it). Needs Ray
(``pip install 'mta_kernels[ray]'``). Target (issue 18): two actors >= 1.6x one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "python")]


def measure(model: str, problems, technique, batch_size: int, actors: int) -> dict:
    from mta.eval import run_eval
    from mta.eval.ray_pool import RayEvalPool
    from mta.eval.registry import load_model

    loader = partial(load_model, model, "cpu")
    pool = RayEvalPool(actors, cpus_per_actor=1)
    try:
        t0 = time.perf_counter()
        pool.start(model, loader)
        startup = time.perf_counter() - t0
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            report = run_eval(problems, [technique], out, models={model: loader}, batch_size=batch_size,
                              progress=False, pool=pool)
            wall = time.perf_counter() - t0
        row = report.rows[0]
        return {"actors": actors, "items": len(problems), "wall_s": wall, "items_per_s": len(problems) / wall,
                "startup_s": startup, "accuracy": row.accuracy, "mean_tokens": row.mean_tokens,
                "load_before": load_before, "load_after": os.getloadavg()}
    finally:
        pool.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2 (offline) or tiny (random weights)")
    ap.add_argument("--data", default="gsm8k")
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray-eval-scaling")
    args = ap.parse_args(argv)

    from mta.data import load_dataset
    from mta.eval import make_technique
    from mta.inference.techniques import Decoding
    from mta.ray_cluster import connect, shutdown

    import ray

    problems = load_dataset(args.data, limit=args.items, seed=0)
    technique = make_technique("greedy", Decoding(max_new_tokens=args.max_new_tokens))
    connect(command="benchmarks/ray_eval_scaling.py", num_cpus=2)
    try:
        rows = [measure(args.model, problems, technique, args.batch_size, n) for n in (1, 2)]
    finally:
        shutdown()
    speedup = rows[1]["items_per_s"] / rows[0]["items_per_s"]
    lines = [f"# Evaluation throughput on Ray: {args.model}, {args.items} {args.data} items, greedy, "
             f"{args.max_new_tokens} new tokens, batch {args.batch_size}, 1 torch thread per actor",
             "", f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"ray {ray.__version__}", "",
             "| actors | wall s | items/s | actor start s (not timed) | load avg before -> after (1 min) |",
             "|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['actors']} | {r['wall_s']:.1f} | {r['items_per_s']:.3f} | {r['startup_s']:.1f} | "
                     f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f} |")
    lines += ["", f"speed-up, 2 actors vs 1: **{speedup:.2f}x** (target >= 1.6x)"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_eval_scaling.md").write_text(text)
    (args.out / "ray_eval_scaling.json").write_text(json.dumps({"rows": rows, "speedup": speedup,
                                                                "ray": ray.__version__, "args": {
                                                                    k: str(v) for k, v in vars(args).items()}},
                                                               indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
