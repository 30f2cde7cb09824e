"""JSONL in → JSONL out for scoring and SBT-E / SBT-D construction, resumable.

Input records: ``{"id", "problem", "gold", "trace"}`` (``question``/``answer``/``response``
accepted as aliases). Every input line ends up either in ``OUT`` or in ``OUT.skipped.jsonl``
with its reason; a restart skips ids already in either file (append mode) unless
``overwrite=True``. Records without an id are keyed ``line:N``. Scoring goes in batches of
``SCORE_BATCH`` records (one tokenizer call each, :func:`mta.sbt.score_traces`); outputs keep
the input order.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from mta.sbt.build import BUILD_OPTIONS, build_example, check_build_options, token_mask
from mta.sbt.scoring import score_traces
from mta.sbt.traces import TraceError

__all__ = ["skipped_path", "run_jsonl", "load_tokenizer", "Summary"]

SCORE_BATCH = 256  # records scored per score_traces call


def skipped_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".skipped.jsonl") if not out.name.endswith(".jsonl") else \
        out.with_name(out.name[: -len(".jsonl")] + ".skipped.jsonl")


def load_tokenizer(name: str | None = None):
    """A fast tokenizer: ``None``/``"smollm2"`` = SmolLM2's (offline cache), else a local path."""
    from transformers import AutoTokenizer

    if name in (None, "smollm2"):
        from mta import models

        target = models._cached_copy_dir(models.smollm2_gguf_path())
        if not models._is_complete(target):
            return models.load_smollm2()[1]
        return AutoTokenizer.from_pretrained(target)
    if not Path(name).exists():
        raise FileNotFoundError(f"--tokenizer: {name!r} is not a local tokenizer directory (no downloads at run time)")
    return AutoTokenizer.from_pretrained(name)


def _done_ids(path: Path) -> set[str]:
    """Ids already written to ``path``; a torn last line (interrupted write) is cut off."""
    ids: set[str] = set()
    if not path.exists():
        return ids
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    for line in data.decode("utf-8").splitlines():
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return ids


class Summary:
    def __init__(self):
        self.records = 0
        self.kept = 0
        self.resumed = 0
        self.skipped: Counter = Counter()
        self.tokens_before = 0
        self.tokens_after = 0
        self.rules: Counter = Counter()  # SBT-E / SBT-D: which rule applied, per record written

    def table(self, title: str) -> str:
        rows = [("records", self.records), ("written", self.kept),
                ("already done (resumed)", self.resumed), ("skipped", sum(self.skipped.values()))]
        rows += [(f"  skipped: {r}", c) for r, c in sorted(self.skipped.items())]
        rows += [(f"  rule: {r}", c) for r, c in sorted(self.rules.items())]
        rows += [("thinking tokens before", self.tokens_before), ("thinking tokens after", self.tokens_after)]
        w = max(len(r[0]) for r in rows)
        lines = [title, "-" * (w + 12)] + [f"{k:<{w}}  {v:>10}" for k, v in rows]
        return "\n".join(lines)


def _field(rec: dict, *names):
    for n in names:
        if n in rec:
            return rec[n]
    raise TraceError("malformed record", f"missing field {names[0]!r}")


def _trace_and_gold(rec) -> tuple:
    if not isinstance(rec, dict):
        raise TraceError("malformed record", "not a JSON object")
    return _field(rec, "trace", "response"), _field(rec, "gold", "answer")


def _score_batch(recs: list, tokenizer, opts: dict) -> list:
    """``_one(rec, "score", …)`` for many records, one tokenizer call: ``(out, before, after)``
    or the TraceError, per record."""
    results: list = [None] * len(recs)
    where, traces, golds, problems = [], [], [], []
    for i, rec in enumerate(recs):
        try:
            trace, gold = _trace_and_gold(rec)
        except TraceError as exc:
            results[i] = exc
            continue
        where.append(i)
        traces.append(trace)
        golds.append(gold)
        problem = rec.get("problem", rec.get("question"))
        problems.append(problem if isinstance(problem, str) else None)
    scores = score_traces(traces, golds, tokenizer, beta=opts.get("beta", 0.1), problems=problems,
                          anchor=opts.get("anchor", "anywhere"), judge=opts.get("judge"), errors="return")
    for i, s in zip(where, scores):
        results[i] = s if isinstance(s, TraceError) else ({"id": None, **s.to_dict()}, s.thinking_tokens,
                                                           s.thinking_tokens)
    return results


def _one(rec, mode: str, tokenizer, opts: dict) -> tuple[dict, int, int]:
    """Build one SBT-E / SBT-D record: ``(out, thinking tokens before, after)``."""
    trace, gold = _trace_and_gold(rec)
    problem = _field(rec, "problem", "question")
    if not isinstance(problem, str) or not problem.strip():
        raise TraceError("malformed record", "empty problem")
    ex = build_example(trace, gold, mode, tokenizer, problem=problem,
                       **{k: v for k, v in opts.items() if k in BUILD_OPTIONS})
    ids, mask = token_mask(tokenizer, ex.content, ex.masked_spans)
    out = {
        "id": None,
        "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": ex.content}],
        "masked_spans": [list(s) for s in ex.masked_spans],
        "token_ids": ids,
        "token_mask": mask,
        "sbt": {"method": mode, "braked": ex.braked, "steps_total": ex.steps_total,
                "steps_kept": ex.steps_kept, "steps_masked": ex.steps_masked,
                "first_correct_step": ex.first_correct_step, "second_correct_step": ex.second_correct_step,
                "rule": ex.rule, "overthink_score": round(ex.overthink_score, 6),
                "thinking_tokens_before": ex.thinking_tokens_before,
                "thinking_tokens_after": ex.thinking_tokens_after},
    }
    return out, ex.thinking_tokens_before, ex.thinking_tokens_after


def run_jsonl(inp, out, mode: str, tokenizer, *, overwrite: bool = False, progress: bool = True,
              **opts) -> Summary:
    """Score (``mode="score"``) or build (``"sbt-e"``/``"sbt-d"``) every record of ``inp``.

    ``out`` may be None for scoring (summary only). Returns the :class:`Summary`.
    """
    if mode not in ("score", "sbt-e", "sbt-d"):
        raise ValueError(f"method must be 'sbt-e' or 'sbt-d', got {mode!r}")
    inp = Path(inp)
    if not inp.is_file():
        raise FileNotFoundError(f"IN: no such file: {inp}")
    if out is None and mode != "score":
        raise ValueError("OUT: an output path is required to build data")
    if mode != "score":
        check_build_options(mode, **{k: v for k, v in opts.items() if k in BUILD_OPTIONS})
    summary = Summary()
    done: set[str] = set()
    fo = fs = None
    if out is not None:
        out = Path(out)
        if out.resolve() == inp.resolve():
            raise ValueError("OUT: must differ from IN")
        out.parent.mkdir(parents=True, exist_ok=True)
        skp = skipped_path(out)
        if overwrite:
            for p in (out, skp):
                if p.exists():
                    p.unlink()
        done = _done_ids(out) | _done_ids(skp)
        fo = open(out, "a", encoding="utf-8")
        fs = open(skp, "a", encoding="utf-8")
    with open(inp, "rb") as f:
        lines = f.read().splitlines()
    seen: set[str] = set()
    try:
        from tqdm import tqdm

        it = tqdm(enumerate(lines, 1), total=len(lines), desc=f"sbt {mode}", unit="rec", disable=not progress)
    except ImportError:  # tqdm is a dev requirement, not a hard one
        it = enumerate(lines, 1)

    def write(lineno: int, rid: str, res) -> None:
        """Account for one record: ``res`` is ``(out, before, after)``, a TraceError or a reason."""
        if isinstance(res, tuple):
            record, before, after = res
            record["id"] = rid
            summary.kept += 1
            if "sbt" in record:
                summary.rules[record["sbt"]["rule"]] += 1
            summary.tokens_before += before
            summary.tokens_after += after
            if fo is not None:
                fo.write(json.dumps(record, ensure_ascii=False) + "\n")
                fo.flush()
            return
        reason, detail = (res.reason, str(res)) if isinstance(res, TraceError) else (res, res)
        summary.skipped[reason] += 1
        if fs is not None:
            fs.write(json.dumps({"id": rid, "line": lineno, "reason": reason, "detail": detail}) + "\n")
            fs.flush()

    pending: list = []  # scoring: (lineno, rid, record or None, reason or None), written in order

    def flush() -> None:
        todo = [k for k, (_, _, _, reason) in enumerate(pending) if reason is None]
        results = dict(zip(todo, _score_batch([pending[k][2] for k in todo], tokenizer, opts))) if todo else {}
        for k, (lineno, rid, _, reason) in enumerate(pending):
            write(lineno, rid, results[k] if reason is None else reason)
        pending.clear()

    for lineno, raw in it:
        if not raw.strip():
            continue
        summary.records += 1
        rid, rec, reason = f"line:{lineno}", None, None
        try:
            rec = json.loads(raw)
            if isinstance(rec, dict) and rec.get("id") is not None:
                rid = str(rec["id"])
        except (ValueError, UnicodeDecodeError):
            reason = "malformed JSON"
        if rid in done:
            summary.resumed += 1
            continue
        if reason is None and rid in seen:
            reason = "duplicate id"
        seen.add(rid)
        if mode == "score":
            pending.append((lineno, rid, rec, reason))
            if len(pending) >= SCORE_BATCH:
                flush()
            continue
        if reason is None:
            try:
                res = _one(rec, mode, tokenizer, opts)
            except TraceError as exc:
                res = exc
        else:
            res = reason
        write(lineno, rid, res)
    flush()
    for fh in (fo, fs):
        if fh is not None:
            os.fsync(fh.fileno())
            fh.close()
    return summary
