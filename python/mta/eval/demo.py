"""The methods table at the end of ``mta demo``: SmolLM2-135M-Instruct on arithmetic
problems, one line per technique with accuracy, tokens and wall time.

It runs the evaluation harness (:func:`mta.eval.run_eval`) on generated arithmetic
problems (gold answers exact, offline) with the techniques of :data:`DEMO_TECHNIQUES`, one
spec string each (``mta eval -t`` syntax): adding a technique to the table is one line.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from mta.data import arithmetic_problems
from mta.eval.harness import run_eval
from mta.eval.registry import make_technique
from mta.eval.report import EvalReport
from mta.inference.techniques import Decoding

__all__ = ["DEMO_PROMPT", "DEMO_TECHNIQUES", "run_methods_demo"]

#: The rows of the table, as ``mta eval`` technique specs.
DEMO_TECHNIQUES = [
    "greedy",
    "sample",
    "braking:max_thinking_tokens=32",
    "sc:n=8",
    "sc:n=8,vote=weighted",
    "bon:n=8,selector=mean_logprob",
    "bon:n=8,selector=oracle",
    "wsd:temperature=0",  # Gemma-3-270M base when installed, else SmolLM2 as a plain-text base (printed)
]

DEMO_PROMPT = "{question} Answer with the number only."


def run_methods_demo(*, device: str = "cpu", limit: int = 12, max_new_tokens: int = 32, out_dir=None,
                     progress: bool = True, model_and_tokenizer=None) -> EvalReport:
    """Evaluate :data:`DEMO_TECHNIQUES` with SmolLM2 on ``limit`` arithmetic problems; print the table."""
    from mta.models import load_smollm2

    t0 = time.perf_counter()
    model, tokenizer = model_and_tokenizer or load_smollm2(device=device)
    print(f"SmolLM2-135M-Instruct on {device}, loaded in {time.perf_counter() - t0:.1f} s; {limit} arithmetic "
          f"problems, T=0.7 where sampled, up to {max_new_tokens} new tokens, prompt {DEMO_PROMPT!r}")
    decoding = Decoding(temperature=0.7, max_new_tokens=max_new_tokens, prompt=DEMO_PROMPT)
    techniques = [make_technique(spec, decoding) for spec in DEMO_TECHNIQUES]
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mta-demo-eval-"))
    report = run_eval(arithmetic_problems(limit, seed=0), techniques, out, models={"SmolLM2-135M-Instruct":
                      (model, tokenizer)}, dataset="arithmetic", batch_size=limit, progress=progress,
                      overwrite=True)
    print(f"\n{report.markdown()}\n")
    print("sc / bon: 8 samples per problem in one batched generation; weighted: votes weighted by "
          "exp(mean token logprob); bon oracle: the first sample math-verify accepts (pass@8, an upper bound); "
          "braking: thinking prompt, </think> forced after 32 thinking tokens")
    for technique in techniques:
        if hasattr(technique, "base_description"):  # WSD: say plainly which base model took over
            print(f"{technique.name}: SmolLM2 drafts greedily (its draft = the greedy row), "
                  f"{technique.base_description} takes over at the first {technique.window}-token window of the "
                  f"draft with geometric-mean probability >= {technique.gamma} and continues greedily; "
                  "tokens = drafter's + base's generated tokens")
    print(f"records, samples, summary and plot: {out}")
    return report
