"""``mta rl train [CONFIG] [--field value ...]``, ``mta rl plot RUN_DIR`` and ``mta align passk``.

``mta rl train`` takes a TOML / YAML config (:mod:`mta.rl.config`); every field is also a
flag (``--group-size 16``, ``--reward random``, ``--dual-clip none``), applied on top of the
file, and ``--experiment NAME`` applies one of the paper's experiments
(:data:`mta.alignment.EXPERIMENTS`) first.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["align_arguments", "rl_arguments"]


def _train(args: argparse.Namespace) -> int:
    from mta.alignment import EXPERIMENTS
    from mta.rl.config import FIELDS, load_config
    from mta.rl.trainer import Trainer

    overrides = dict(EXPERIMENTS[args.experiment]) if args.experiment else {}
    overrides.update({name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None})
    try:
        cfg = load_config(args.config, overrides)
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta rl train: error: {error}", file=sys.stderr)
        return 2
    rows = trainer.train()
    wall = time.perf_counter() - t0
    steps = [r for r in rows if r.get("step", 0) > 0 and "reward" in r]
    print(_summary(steps, rows, wall, trainer))
    return 0


def _summary(steps: list[dict], rows: list[dict], wall: float, trainer) -> str:
    k = max(1, min(3, len(steps) // 3))
    head = sum(r["reward"] for r in steps[:k]) / k
    tail = sum(r["reward"] for r in steps[-k:]) / k
    acc_head = sum(r["accuracy"] for r in steps[:k]) / k
    acc_tail = sum(r["accuracy"] for r in steps[-k:]) / k
    evals = [(r["step"], r["eval_accuracy"]) for r in rows if "eval_accuracy" in r]
    unscorable = sum(r.get("unscorable", 0) for r in steps)
    lines = [
        f"run {trainer.run_dir}: {len(steps)} steps, {wall:.0f} s wall (this process)",
        f"reward   first {k} steps {head:.3f} -> last {k} steps {tail:.3f}",
        f"accuracy first {k} steps {acc_head:.3f} -> last {k} steps {acc_tail:.3f} (sampled, training prompts)",
        f"unscorable samples: {unscorable}",
    ]
    if evals:
        lines.append("held-out greedy accuracy: " + ", ".join(f"step {s}: {a:.3f}" for s, a in evals))
    lines.append(f"metrics: {trainer.run_dir / 'metrics.jsonl'}, plot: {trainer.run_dir / 'metrics.png'}")
    return "\n".join(lines)


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mta.rl.metrics import plot_metrics

    try:
        out = plot_metrics(Path(args.run_dir), args.out or Path(args.run_dir) / "metrics.png",
                           title=f"mta rl — {args.run_dir}")
    except (FileNotFoundError, ValueError) as error:
        print(f"mta rl plot: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def rl_arguments(rl: argparse.ArgumentParser) -> None:
    """``rl``'s sub-commands ``train`` and ``plot`` with their options: the ``populate``
    callback of ``mta rl`` (:mod:`mta.cli` creates the parser; this imports torch)."""
    from mta.alignment import EXPERIMENTS
    from mta.rl.config import FIELDS

    rs = rl.add_subparsers(dest="rl_command", metavar="RL_COMMAND")
    rs.required = True
    tr = rs.add_parser("train", help="train from a TOML / YAML config; every field is also a flag",
                       description=__doc__.split("\n\n")[1])
    tr.add_argument("config", nargs="?", default=None, metavar="CONFIG",
                    help="a .toml / .yaml config (default: the built-in defaults)")
    tr.add_argument("--experiment", choices=sorted(EXPERIMENTS), help="one of the paper's experiments")
    fields = tr.add_argument_group("config fields (override the file)")
    for name, f in FIELDS.items():
        fields.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=str(f.type).upper(),
                            help=f"{f.metadata['help']} [default {f.default!r}]")
    tr.set_defaults(func=_train)
    pl = rs.add_parser("plot", help="PNG of a run's metrics.jsonl",
                       description="Plot reward, accuracy, length, entropy, clipping / KL, grad norm and tokens/s.")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help="PNG path (default RUN_DIR/metrics.png)")
    pl.set_defaults(func=_plot)


def _passk(args: argparse.Namespace) -> int:
    from mta.alignment import pass_at_k_curve, write_report
    from mta.rl.loading import check_chat_template, load_model, load_problems, resolve_device

    try:
        problems = load_problems(args.data, limit=args.limit, seed=args.seed)
        device = resolve_device(args.device)
        model, tokenizer = load_model(args.model, device, seed=args.seed)
        check_chat_template(tokenizer, not args.no_chat_template)
        result = pass_at_k_curve(model, tokenizer, problems, n=args.n, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, top_p=args.top_p, prompt_template=args.prompt_template,
                                 chat_template=not args.no_chat_template, batch_prompts=args.batch_prompts,
                                 seed=args.seed, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta align passk: error: {error}", file=sys.stderr)
        return 2
    out = args.out or f"runs/passk-{args.model.replace('/', '_')}-{args.data.replace('/', '_')}"
    print(write_report(result, out, label=f"{args.model} on {args.data}", threshold=args.threshold))
    print(f"wrote {out}/passk.md, passk.json, passk.png")
    return 0


def align_arguments(al: argparse.ArgumentParser) -> None:
    """``align``'s sub-command ``passk`` with its options: the ``populate`` callback of ``mta align``."""
    als = al.add_subparsers(dest="align_command", metavar="ALIGN_COMMAND")
    als.required = True
    pk = als.add_parser("passk", help="pass@k for k = 1..n of a model on a data set, a table, a plot, a verdict",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pk.add_argument("--model", default="smollm2", help="'smollm2', 'tiny-llama' or a local model directory")
    pk.add_argument("--data", default="gsm8k", help="gsm8k, gsm8k-train, math500, arithmetic or a .jsonl file")
    pk.add_argument("--n", type=int, default=16, help="samples per problem")
    pk.add_argument("--limit", type=int, default=50, help="problems (the first N)")
    pk.add_argument("--max-new-tokens", type=int, default=256)
    pk.add_argument("--temperature", type=float, default=1.0)
    pk.add_argument("--top-p", type=float, default=1.0)
    pk.add_argument("--prompt-template", default="{question}", help="user message; {question} is replaced")
    pk.add_argument("--no-chat-template", action="store_true", help="plain prompts")
    pk.add_argument("--batch-prompts", type=int, default=8, help="problems per generate call")
    pk.add_argument("--threshold", type=float, default=0.5, help="pass@n at or above it reads as strong alignment")
    pk.add_argument("--device", default="auto")
    pk.add_argument("--seed", type=int, default=0)
    pk.add_argument("--out", default=None, help="output directory (default runs/passk-MODEL-DATA)")
    pk.add_argument("--no-progress", action="store_true")
    pk.set_defaults(func=_passk)
