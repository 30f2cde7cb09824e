"""``mta sbt score IN.jsonl [--out scores.jsonl]``, ``mta sbt build IN.jsonl OUT.jsonl --method sbt-e|sbt-d``,
``mta sbt demo`` (SmolLM2 decoding with and without braking), ``mta sbt train DATA.jsonl``
(masked SFT), ``mta sbt export-trl DATA.jsonl OUT.jsonl`` (for trl.SFTTrainer) and ``mta sbt loop``.

``score`` and ``build`` need the ``math`` extra (math-verify) and ``tokenizers`` (the
``transformers`` extra); both are checked before any output is opened. They read the
tokenizer straight from its ``tokenizer.json`` and never import torch's model code, so they
start in a second or two.
"""

from __future__ import annotations

import argparse
import sys

from mta.lazy_parser import LazyParser
from mta.ray_cluster import add_ray_arguments

__all__ = ["add_parser"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", default="smollm2",
                   help="local tokenizer directory, or 'smollm2' (default: SmolLM2's, offline)")
    p.add_argument("--anchor", choices=("sentence", "anywhere"), default="anywhere",
                   help="where a marker counts: anywhere (default, the paper's Eq. 2) or at a sentence/step start")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is off anyway when stderr is not a terminal, or with MTA_PROGRESS=0)")


def _run(args: argparse.Namespace) -> int:
    from mta.extras import MissingExtraError, require

    command = f"mta sbt {args.sbt_command}"
    try:
        require(command, "math")
        require(command, "transformers", modules=("tokenizers",))
        from mta.sbt.pipeline import load_tokenizer, run_jsonl

        tok = load_tokenizer(args.tokenizer, backend_only=True)
        if args.sbt_command == "score":
            scorer = None
            if args.ray is not None:  # the batches as Ray tasks; reading and writing stay here
                from mta.ray_cluster import connect
                from mta.sbt.ray_scoring import RayScorer

                connect(args.ray or None, command="mta sbt score --ray")
                scorer = RayScorer(tok)
            s = run_jsonl(args.input, args.out, "score", tok, overwrite=args.overwrite,
                          progress=not args.no_progress, anchor=args.anchor, scorer=scorer)
        else:
            for flag, value in (("--masked-steps", args.masked_steps), ("--masked-sentences", args.masked_sentences)):
                if value is not None and value < 0:
                    raise ValueError(f"{flag} must be >= 0, got {value}")
            if args.masked_fraction is not None and not 0 < args.masked_fraction <= 1:
                raise ValueError(f"--masked-fraction must be in (0, 1], got {args.masked_fraction}")
            s = run_jsonl(args.input, args.output, args.method, tok, overwrite=args.overwrite,
                          progress=not args.no_progress, anchor=args.anchor, masked_steps=args.masked_steps,
                          masked_sentences=args.masked_sentences, masked_fraction=args.masked_fraction,
                          phrase_position=args.phrase_position, tau1=args.tau1)
    except (MissingExtraError, ValueError, TypeError, OSError) as exc:  # OSError: FileNotFoundError, permissions, disk full
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        if getattr(args, "ray", None) is not None and sys.modules.get("ray") is not None:
            from mta.ray_cluster import shutdown

            shutdown()
    title = command + (f" --method {args.method}" if args.sbt_command == "build" else "")
    print(s.table(title))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from mta.extras import require
    from mta.sbt import braking_demo

    require("mta sbt demo", "transformers")
    return braking_demo.run_from_args(args)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from mta.sbt import braking_demo

    parser.description = braking_demo.__doc__.split("\n\n")[0].replace("\n", " ")
    braking_demo.add_arguments(parser)


def _loop_arguments(parser: argparse.ArgumentParser) -> None:
    from mta.sbt import loop

    parser.description = loop.__doc__.split("\n\n")[0].replace("\n", " ")
    loop.add_arguments(parser)


def _loop(args: argparse.Namespace) -> int:
    from mta.extras import require

    require("mta sbt loop", "transformers")
    from mta.sbt.loop import run_loop

    try:
        run_loop(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta sbt loop: error: {error}", file=sys.stderr)
        return 2
    return 0


def _train(args: argparse.Namespace) -> int:
    """``mta sbt train DATA.jsonl``: masked SFT on SBT records (mta.sbt.sft)."""
    import time

    from mta.extras import require

    require("mta sbt train", "transformers")
    from mta.sbt.sft import SFTConfig, SFTTrainer

    try:
        cfg = SFTConfig(data=args.data, model=args.model, epochs=args.epochs, steps=args.steps,
                        batch_size=args.batch_size, micro_batch_size=args.micro_batch_size, max_length=args.max_length,
                        lr=args.lr, lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps,
                        grad_clip=None if args.grad_clip <= 0 else args.grad_clip,
                        add_think_tokens=not args.no_think_tokens, device=args.device, seed=args.seed,
                        run_dir=args.run_dir, save_every=args.save_every, resume=not args.overwrite,
                        progress=not args.no_progress)
        t0 = time.perf_counter()
        trainer = SFTTrainer(cfg)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta sbt train: error: {error}", file=sys.stderr)
        return 2
    rows = trainer.train()
    wall = time.perf_counter() - t0
    k = max(1, min(3, len(rows) // 3))
    print(f"run {trainer.run_dir}: {len(rows)} steps on {len(trainer.examples)} records, {wall:.0f} s wall "
          f"(this process)\nloss (NLL / trained token) first {k} steps {sum(r['loss'] for r in rows[:k]) / k:.3f} "
          f"-> last {k} steps {sum(r['loss'] for r in rows[-k:]) / k:.3f}\n"
          f"trained tokens {sum(e.trained_tokens for e in trainer.examples)}, masked "
          f"{sum(len(e.input_ids) - e.trained_tokens for e in trainer.examples)} (prompt + masked spans)\n"
          f"model: {trainer.run_dir / 'model'}, metrics: {trainer.run_dir / 'metrics.jsonl'}, "
          f"plot: {trainer.run_dir / 'metrics.png'}")
    return 0


def _export_trl(args: argparse.Namespace) -> int:
    """``mta sbt export-trl DATA.jsonl OUT.jsonl``: input_ids + assistant_masks for trl.SFTTrainer."""
    from mta.extras import require

    require("mta sbt export-trl", "transformers")
    from mta.sbt.pipeline import load_tokenizer
    from mta.sbt.sft_data import read_records, tokenize_records, write_trl

    try:
        tokenizer = load_tokenizer(args.tokenizer)
        if args.think_tokens:
            new = [t for t in ("<think>", "</think>") if len(tokenizer.encode(t, add_special_tokens=False)) != 1]
            tokenizer.add_tokens(new, special_tokens=True)
        examples = tokenize_records(read_records(args.data), tokenizer, max_length=args.max_length)
        out = write_trl(examples, args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"mta sbt export-trl: error: {error}", file=sys.stderr)
        return 2
    trained = sum(e.trained_tokens for e in examples)
    total = sum(len(e.input_ids) for e in examples)
    print(f"wrote {out}: {len(examples)} records, {total} tokens, {trained} trained ({total - trained} masked)")
    return 0


def add_parser(sub) -> None:
    """Add ``sbt`` (with ``score``, ``build`` and ``demo``) to the ``mta`` subparsers."""
    sbt = sub.add_parser("sbt", help="Self-Braking Tuning: score traces, build SBT-E / SBT-D data",
                         description="Self-Braking Tuning (arXiv 2505.14604): overthinking scores of "
                         "long chain-of-thought traces and SBT-E / SBT-D training data with loss masks.")
    ss = sbt.add_subparsers(dest="sbt_command", metavar="SBT_COMMAND", parser_class=LazyParser)
    ss.required = True
    sc = ss.add_parser("score", help="κ, η and the overthink score of every trace",
                       description="Score every trace of IN.jsonl (fields id, problem, gold, trace). "
                       "Skipped records go to OUT.skipped.jsonl with their reason; reruns resume.")
    sc.add_argument("input", metavar="IN.jsonl")
    sc.add_argument("--out", default=None, metavar="scores.jsonl", help="write per-trace scores here")
    add_ray_arguments(sc, "score the batches as tasks")
    _common(sc)
    sc.set_defaults(func=_run)
    b = ss.add_parser("build", help="SBT-E / SBT-D chat-format data with loss masks",
                      description="Build SBT-E or SBT-D training data (chat messages JSONL, masked "
                      "spans and token masks). Skipped records go to OUT.skipped.jsonl; reruns resume.")
    b.add_argument("input", metavar="IN.jsonl")
    b.add_argument("output", metavar="OUT.jsonl")
    b.add_argument("--method", required=True, choices=("sbt-e", "sbt-d"))
    mask = b.add_mutually_exclusive_group()
    mask.add_argument("--masked-sentences", type=int, default=None,
                      help="SBT-E: sentences of the next solution kept as masked text (default 2)")
    mask.add_argument("--masked-fraction", type=float, default=None,
                      help="SBT-E: share of the next solution's sentences kept as masked text, e.g. 0.15")
    mask.add_argument("--masked-steps", type=int, default=None, help="SBT-E: whole steps kept as masked text")
    b.add_argument("--phrase-position", choices=("before_masked", "after_masked"), default=None,
                   help="braking phrase before or after the masked text (default: before for SBT-E, after for SBT-D)")
    b.add_argument("--tau1", type=float, default=0.2, help="overthink-score threshold τ1 (τ2 = τ1 + 0.05)")
    _common(b)
    b.set_defaults(func=_run)
    d = ss.add_parser("demo", help="SmolLM2 thinking with and without braking (braking_step per decode step)",
                      populate=_demo_arguments)  # the demo's options import torch: only when used
    d.set_defaults(func=_demo)
    lp = ss.add_parser("loop", help="the whole SBT loop: traces, score, SBT-E, fine-tune, before/after",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, populate=_loop_arguments)
    lp.set_defaults(func=_loop)
    t = ss.add_parser("train", help="fine-tune on SBT-E / SBT-D records, honouring their loss masks",
                      description="Supervised fine-tuning on the JSONL mta sbt build writes: masked spans and the "
                      "prompt get no gradient. Checkpoints resume; metrics.jsonl, metrics.png and the trained "
                      "model (RUN_DIR/model, loadable with --model) go to --run-dir.",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("data", metavar="DATA.jsonl")
    t.add_argument("--model", default="smollm2", help="'smollm2', 'tiny-llama' or a local model directory")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--steps", type=int, default=None, help="optimizer steps (default: epochs x batches)")
    t.add_argument("--batch-size", type=int, default=8, help="records per optimizer step")
    t.add_argument("--micro-batch-size", type=int, default=2, help="records per forward / backward")
    t.add_argument("--max-length", type=int, default=2048, help="tokens kept per record")
    t.add_argument("--lr", type=float, default=1e-5)
    t.add_argument("--lr-schedule", choices=("constant", "linear", "cosine"), default="constant")
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--grad-clip", type=float, default=1.0, help="0: off")
    t.add_argument("--no-think-tokens", action="store_true",
                   help="do not add <think> / </think> as special tokens when the tokenizer lacks them")
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--run-dir", default="runs/sbt-sft")
    t.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: at the end)")
    t.add_argument("--overwrite", action="store_true", help="start over instead of resuming RUN_DIR")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)
    x = ss.add_parser("export-trl", help="input_ids + assistant_masks JSONL that trl.SFTTrainer trains on as is",
                      description="Template SBT records and write the pre-tokenised format TRL's SFTTrainer turns "
                      "into labels itself (assistant_masks: 0 = no loss).")
    x.add_argument("data", metavar="DATA.jsonl")
    x.add_argument("output", metavar="OUT.jsonl")
    x.add_argument("--tokenizer", default="smollm2", help="local tokenizer directory, or 'smollm2'")
    x.add_argument("--think-tokens", action="store_true",
                   help="add <think> / </think> as special tokens first (as mta sbt train does; then resize the "
                   "model's embeddings to len(tokenizer) before training)")
    x.add_argument("--max-length", type=int, default=None, help="tokens kept per record")
    x.set_defaults(func=_export_trl)
