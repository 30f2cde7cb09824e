"""Self-Braking decoding demo: SmolLM2-135M-Instruct thinking with and without braking.

SmolLM2 was not trained with ``<think>`` / ``</think>``, so the demo first adds them as
special tokens, the step every SBT fine-tune of such a model takes (new embedding rows: the
mean of the embeddings of the tokens the text had before, so ``</think>`` starts close to
its spelling). Thinking rows get a prompt that opens the thinking ("Let me think step by
step."); the ThinkFree row gets a plain prompt and ``in_think=False``, so braking leaves it
untouched. Both runs are greedy, so the braked run is the unbraked one up to the brake:
the difference in thinking tokens is what braking saved. The unbraked run uses the same
controller with every trigger off, which still counts each row's thinking.

Thinking tokens are the tokens the model generated inside the thinking, as everywhere in
the library (:mod:`mta.generation.braking`): the forced brake text is shown in its own
column, so "thinking saved" is never negative.

Run it with ``mta sbt demo`` (or ``python -m mta.sbt.braking_demo``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from mta.models import THINK_CLOSE, THINK_OPEN, add_think_tokens  # noqa: F401 - re-exported (README)
from mta_kernels.braking import BrakingConfig, MarkerTables
from mta_kernels.integrations.transformers import BrakingLogitsProcessor

__all__ = ["DEMO_QUESTIONS", "DemoRow", "add_think_tokens", "run_demo", "main"]

THINK_CUE = "Let me think step by step.\n\n"

#: (question, gold answer, thinks): the last one is a ThinkFree row.
DEMO_QUESTIONS = [
    ("A train travels 60 km in 1.5 hours. What is its average speed in km/h?", "40", True),
    ("Sara reads 12 pages a day. How many days does she need for a 150-page book?", "13", True),
    ("A rectangle is 8 cm long and 5 cm wide. What is its perimeter and its area?", "26 and 40", True),
    ("If I have 3 apples, buy 5 more and then eat 2, how many apples do I have?", "6", True),
    ("What is the sum of the first 10 positive integers?", "55", True),
    ("What is the capital of France?", "Paris", False),
]


@dataclass
class DemoRow:
    """One question's outcome in both runs."""

    question: str
    thinks: bool
    free_tokens: int          # all generated tokens, no braking
    free_thinking: int        # thinking tokens, no braking
    braked_tokens: int
    braked_thinking: int      # thinking tokens the model generated before its brake
    braked_forced: int        # brake-text tokens forced after them (</think> included)
    braked: bool
    reason: str
    free_text: str
    braked_text: str

    @property
    def saved(self) -> int:
        """Generated tokens braking saved on this row (negative: the braked row wrote more)."""
        return self.free_tokens - self.braked_tokens

    @property
    def thinking_saved(self) -> int:
        """Thinking tokens braking saved on this row (never negative under greedy decoding)."""
        return self.free_thinking - self.braked_thinking


def _prompt_ids(tokenizer, question: str, thinks: bool) -> list[int]:
    messages = [{"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if thinks:
        text += THINK_OPEN + "\n" + THINK_CUE
    return tokenizer.encode(text, add_special_tokens=False)


def run_demo(
    *,
    device: str = "cpu",
    max_new_tokens: int = 256,
    cfg: BrakingConfig | None = None,
    progress: bool = True,
) -> list[DemoRow]:
    """Decode :data:`DEMO_QUESTIONS` greedily without and with braking; print a table."""
    from mta.generation.engine import generate
    from mta.models import load_smollm2

    t0 = time.perf_counter()
    model, tokenizer = load_smollm2(device=device)
    add_think_tokens(model, tokenizer)
    tables = MarkerTables.from_tokenizer(tokenizer, vocab_size=model.config.vocab_size)
    print(f"SmolLM2-135M-Instruct on {device}, loaded in {time.perf_counter() - t0:.1f} s; "
          f"marker automaton: {tables.num_states} states over {tables.transitions.shape[1]} token classes")
    cfg = cfg or BrakingConfig(max_thinking_tokens=64, marker_ratio=0.08, min_thinking_tokens=24, max_steps=3)
    print(f"braking triggers: {cfg}\n")

    prompts = [_prompt_ids(tokenizer, q, thinks) for q, _, thinks in DEMO_QUESTIONS]
    in_think = torch.tensor([thinks for _, _, thinks in DEMO_QUESTIONS])
    runs = {}
    for name, run_cfg in (("free", BrakingConfig()), ("braked", cfg)):
        proc = BrakingLogitsProcessor(tables, run_cfg, in_think=in_think)
        runs[name] = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                              braking=proc, progress=progress)
    free, braked = runs["free"], runs["braked"]
    rows = []
    for b, (question, _, thinks) in enumerate(DEMO_QUESTIONS):
        fr, br = free.braking[b], braked.braking[b]
        rows.append(DemoRow(
            question=question, thinks=thinks, free_tokens=len(free.token_ids[b]), free_thinking=fr.thinking_tokens,
            braked_tokens=len(braked.token_ids[b]), braked_thinking=br.thinking_tokens,
            braked_forced=br.forced_tokens, braked=br.braked,
            reason=br.reason, free_text=tokenizer.decode(free.token_ids[b], skip_special_tokens=False),
            braked_text=tokenizer.decode(braked.token_ids[b], skip_special_tokens=False),
        ))
    _print(rows)
    return rows


def _print(rows: list[DemoRow]) -> None:
    head = (f"{'row':>3}  {'mode':<10} {'thinking free':>13} {'thinking braked':>15} {'+ forced':>8} "
            f"{'braked':<15} {'thinking saved':>14} {'tokens free':>11} {'tokens braked':>13}")
    print(head)
    print("-" * len(head))
    for b, r in enumerate(rows):
        why = f"yes ({r.reason})" if r.braked else "no"
        print(f"{b:>3}  {'think' if r.thinks else 'think-free':<10} {r.free_thinking:>13} {r.braked_thinking:>15} "
              f"{r.braked_forced:>8} {why:<15} {r.thinking_saved:>14} {r.free_tokens:>11} {r.braked_tokens:>13}")
    free_think = sum(r.free_thinking for r in rows)
    saved_think = sum(r.thinking_saved for r in rows)
    forced = sum(r.braked_forced for r in rows)
    total_free = sum(r.free_tokens for r in rows)
    print(f"\nthinking tokens (generated by the model inside <think>): {free_think} without braking, "
          f"{free_think - saved_think} with ({saved_think} saved, {100 * saved_think / max(free_think, 1):.0f}%), "
          f"plus {forced} forced brake-text tokens; all generated tokens: "
          f"{total_free} -> {total_free - sum(r.saved for r in rows)}")
    print("(SmolLM2 was never trained to think: unbraked, it ends its turn inside the thinking; braked, it "
          "restates its work after </think>, which is what SBT fine-tuning teaches a model not to do)")
    for b, r in enumerate(rows):
        print(f"\n[row {b}] {r.question}")
        print("  braked: " + r.braked_text.strip().replace("\n", "\n          "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mta.sbt.braking_demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared with ``mta sbt demo``)."""
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per row at most (default 256)")
    parser.add_argument("--budget", type=int, default=64, help="thinking-token budget (default 64)")
    parser.add_argument("--marker-ratio", type=float, default=0.08, help="marker-token ratio trigger (default 0.08)")
    parser.add_argument("--min-thinking", type=int, default=24, help="thinking tokens before the ratio counts (default 24)")
    parser.add_argument("--max-steps", type=int, default=3, help="thinking-step trigger (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = BrakingConfig(max_thinking_tokens=args.budget, marker_ratio=args.marker_ratio,
                        min_thinking_tokens=args.min_thinking, max_steps=args.max_steps)
    rows = run_demo(device=device, max_new_tokens=args.max_new_tokens, cfg=cfg, progress=not args.no_progress)
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
