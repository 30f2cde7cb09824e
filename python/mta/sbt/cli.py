"""``mta sbt score IN.jsonl [--out scores.jsonl]``, ``mta sbt build IN.jsonl OUT.jsonl --method sbt-e|sbt-d``
and ``mta sbt demo`` (SmolLM2 decoding with and without braking).

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
