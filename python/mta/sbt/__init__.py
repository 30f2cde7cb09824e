"""Self-Braking Tuning (arXiv 2505.14604): overthinking scores and SBT-E / SBT-D data.

>>> from mta.sbt import score_trace, build_sbt_e, find_markers   # doctest: +SKIP
>>> score_trace("<think>\\n2+2=4.\\n\\nWait, 4.\\n</think>\\n\\n4", "4", tokenizer)  # doctest: +SKIP
>>> score_traces(traces, golds, tokenizer)   # a batch, one tokenizer call  # doctest: +SKIP

CLI: ``mta sbt score IN.jsonl`` and ``mta sbt build IN.jsonl OUT.jsonl --method sbt-e``.
Sample traces: ``mta.sbt.SAMPLE_TRACES`` (``data/sample_traces.jsonl``).

Modules: ``traces`` (``<think>`` parsing, steps), ``markers``, ``judge`` (which steps reach
the answer: the rule-based ``RuleJudge`` on ``conclusions`` and ``answers``, any callable,
or ``llm_judge.LLMJudge``), ``number_words``, ``tokens`` (token offsets), ``scoring`` (κ, η,
score; one trace or a batch), ``reference`` (the straightforward scorer), ``build`` (SBT-E /
SBT-D examples), ``labelled`` (the hand-labelled traces), ``pipeline`` (JSONL in and out),
``cli``.
"""

from pathlib import Path

from mta.sbt.answers import AnswerChecker
from mta.sbt.build import (D_PHRASE, E_PHRASE, RULE_BELOW_TAU1, RULE_CUT, RULE_NO_SECOND, RULE_NOTHING_AFTER, Example,
                           build_example, build_sbt_d, build_sbt_e, token_mask)
from mta.sbt.conclusions import Conclusion, step_conclusions
from mta.sbt.judge import Judge, RuleJudge
from mta.sbt.llm_judge import LLMJudge
from mta.sbt.markers import SBT_MARKERS, find_markers, marker_spans, merge_spans
from mta.sbt.pipeline import Summary, load_tokenizer, run_jsonl, skipped_path
from mta.sbt.reference import score_trace_reference
from mta.sbt.scoring import BETA, TAU1, TAU2, TraceScore, score_trace, score_traces
from mta.sbt.tokens import batch_token_offsets, token_offsets
from mta.sbt.traces import Trace, TraceError, split_steps, split_trace

SAMPLE_TRACES = Path(__file__).parent / "data" / "sample_traces.jsonl"

__all__ = [
    "SBT_MARKERS", "find_markers", "marker_spans", "merge_spans", "BETA", "TAU1", "TAU2",
    "AnswerChecker", "Conclusion", "step_conclusions", "Judge", "RuleJudge", "LLMJudge", "Trace", "TraceError", "TraceScore",
    "split_steps", "split_trace", "score_trace", "score_traces", "score_trace_reference", "token_offsets",
    "batch_token_offsets", "E_PHRASE", "D_PHRASE", "RULE_BELOW_TAU1", "RULE_CUT", "RULE_NO_SECOND",
    "RULE_NOTHING_AFTER", "Example", "build_example", "build_sbt_e", "build_sbt_d", "token_mask",
    "run_jsonl", "load_tokenizer", "Summary", "skipped_path", "SAMPLE_TRACES",
]
