"""``mta tfpi train CONFIG [--field value ...]`` and ``mta tfpi eval``."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["add_parser"]


def _train(args: argparse.Namespace) -> int:
    from mta.rl.config import FIELDS
    from mta.tfpi.stages import load_tfpi_config, run_stages

    overrides = {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
    try:
        cfg = load_tfpi_config(args.config, overrides)
        t0 = time.perf_counter()
        rows = run_stages(cfg)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta tfpi train: error: {error}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    print(f"run {cfg.base.run_dir}: {len(cfg.stages)} stages, {wall:.0f} s wall (this process)")
    for k, stage in enumerate(cfg.stages, start=1):
        srows = [r for r in rows if r["stage"] == k and "reward" in r]
        evals = [f"{r['eval_accuracy']:.3f}" for r in rows if r["stage"] == k and "eval_accuracy" in r]
        if srows:
            mean = lambda key: sum(r[key] for r in srows) / len(srows)  # noqa: E731
            print(f"stage {k} (max_new_tokens {stage.max_new_tokens}): {len(srows)} steps, reward {mean('reward'):.3f}, "
                  f"accuracy {mean('accuracy'):.3f}, response length {mean('response_length'):.1f}, "
                  f"truncated {mean('truncated_fraction'):.2f}, step {mean('step_s'):.1f} s"
                  + (f"; held-out greedy accuracy {' -> '.join(evals)}" if evals else ""))
    print(f"metrics: {cfg.base.run_dir}/metrics.jsonl, plot: {cfg.base.run_dir}/metrics.png, "
          f"model: {cfg.base.run_dir}/model")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mta.rl.loading import load_model, load_problems, resolve_device
    from mta.tfpi.evaluate import compare_modes, write_report

    try:
        problems = load_problems(args.data, limit=args.limit, seed=args.seed)
        model, tokenizer = load_model(args.model, resolve_device(args.device), seed=args.seed)
        results = compare_modes(model, tokenizer, problems, max_new_tokens=args.max_new_tokens,
                                batch_size=args.batch_size, prompt_template=args.prompt_template,
                                progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta tfpi eval: error: {error}", file=sys.stderr)
        return 2
    out = args.out or f"runs/tfpi-eval-{args.model.replace('/', '_')}-{args.data.replace('/', '_')}"
    print(write_report(results, out, title=f"{args.model} on {args.data} ({len(problems)} problems, "
                                           f"max_new_tokens {args.max_new_tokens}, greedy)"))
    print(f"wrote {out}/table.md, results.json, plot.png")
    return 0


def _train_arguments(tr: argparse.ArgumentParser) -> None:
    from mta.rl.cli import add_field_flags

    tr.add_argument("config", metavar="CONFIG", help="a .toml / .yaml config: RLConfig fields and [[stages]]")
    add_field_flags(tr, "config fields (override the file's base config)", skip=("max_new_tokens", "steps"))


def add_parser(sub) -> None:
    """Add ``tfpi`` (``train``, ``eval``) to the ``mta`` subparsers (the train options, which
    import torch through the RL config, are built on first use)."""
    tf = sub.add_parser("tfpi", help="TFPI: ThinkFree staged RLVR and ThinkFree-vs-thinking evaluation",
                        description="Thinking-Free Policy Initialization (arXiv 2509.26226).")
    ts = tf.add_subparsers(dest="tfpi_command", metavar="TFPI_COMMAND")
    ts.required = True
    tr = ts.add_parser("train", help="staged RLVR on ThinkFree prompts, growing max response length",
                       description="Train in stages ([[stages]] max_new_tokens / steps in CONFIG), each an mta rl "
                       "trainer run on ThinkFree prompts from the previous stage's checkpoint.",
                       populate=_train_arguments)
    tr.set_defaults(func=_train)
    ev = ts.add_parser("eval", help="ThinkFree vs thinking of one model: accuracy, mean / p90 tokens, wall time",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--model", default="smollm2", help="'smollm2', 'tiny-llama' or a local model directory")
    ev.add_argument("--data", default="gsm8k", help="gsm8k, gsm8k-train, math500, arithmetic or a .jsonl file")
    ev.add_argument("--limit", type=int, default=32, help="problems (the first N)")
    ev.add_argument("--max-new-tokens", type=int, default=256)
    ev.add_argument("--batch-size", type=int, default=8, help="problems per generate call")
    ev.add_argument("--prompt-template", default="{question}", help="user message; {question} is replaced")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default=None, help="output directory (default runs/tfpi-eval-MODEL-DATA)")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_eval)
