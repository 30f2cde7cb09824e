"""JSONL in → JSONL out for scoring and SBT-E / SBT-D construction, resumable.

Input records: ``{"id", "problem", "gold", "trace"}`` (``question``/``answer``/``response``
accepted as aliases). Every non-blank input line ends up exactly once either in ``OUT`` or
in ``OUT.skipped.jsonl`` with its reason, in input order; blank lines are not records.
Records without an id are keyed ``line:N``; a second record with an id already seen is
skipped as ``"duplicate id"``.

One bad record never stops a run: malformed or too deeply nested JSON, invalid Unicode (a
lone surrogate escape such as ``"\\ud800"``, which neither the tokenizer nor a UTF-8 file
can take), a missing field, an unusable trace, or any error raised while scoring or
building one record — each is skipped with its reason and the run goes on. A record is
serialised before anything is written, so a failure never leaves half a line.

Resume: a rerun (append mode, unless ``overwrite=True``) counts how many times each id is
already in either file and skips that many occurrences of it in the input, so duplicates
are accounted for after a kill exactly as in an uninterrupted run (records are written in
input order, so what a killed run wrote is a prefix of what a full run writes). A torn last
line (killed mid-write) is cut off first.

Scoring goes in batches of ``SCORE_BATCH`` records (one tokenizer call each,
:func:`mta.sbt.score_traces`); a batch that fails as a whole is scored record by record, so
the error stays with the record that caused it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from mta.extras import require
from mta.progress import progress_bar
from mta.sbt.build import BUILD_OPTIONS, build_example, check_build_options, token_mask
from mta.sbt.scoring import score_traces
from mta.sbt.traces import TraceError

__all__ = ["skipped_path", "run_jsonl", "load_tokenizer", "Skipped", "Summary"]

SCORE_BATCH = 256  # records scored per score_traces call
_FIELDS = {"trace": ("trace", "response"), "gold": ("gold", "answer"), "problem": ("problem", "question")}
_SURROGATE = re.compile("[\ud800-\udfff]")
# Line breaks to str.splitlines() (and some JSONL readers) that json.dumps(ensure_ascii=False)
# leaves raw inside strings; written as \uXXXX escapes, one record stays one line for any reader.
_UNICODE_BREAK = re.compile("[\u0085\u2028\u2029]")


@dataclass(frozen=True)
class Skipped:
    """A record's failure as ``(reason, detail)``: what a scorer elsewhere sends back instead of
    the exception (which may not survive pickling with its reason)."""

    reason: str
    detail: str


def _escape(m: re.Match) -> str:
    return "\\u%04x" % ord(m.group(0))


def skipped_path(out: Path) -> Path:
    """``OUT.skipped.jsonl`` beside ``OUT`` (``x.jsonl`` → ``x.skipped.jsonl``)."""
    out = Path(out)
    return out.with_name(out.name + ".skipped.jsonl") if not out.name.endswith(".jsonl") else \
        out.with_name(out.name[: -len(".jsonl")] + ".skipped.jsonl")


def load_tokenizer(name: str | None = None, *, backend_only: bool = False):
    """A fast tokenizer: ``None``/``"smollm2"`` = SmolLM2's (offline cache), else a local path.

    ``backend_only=True`` returns the ``tokenizers.Tokenizer`` read from the directory's
    ``tokenizer.json`` when there is one (all that scoring and building need: offsets and
    ids), without importing transformers; the CLI uses it to start in a second or two.
    """
    if name in (None, "smollm2"):
        from mta import models

        target = models._cached_copy_dir(models.smollm2_gguf_path())
        if not models._is_complete(target):  # first use: dequantise the GGUF, tokenizer included
            require("SmolLM2's first load", "transformers")
            return models.load_smollm2()[1]
    else:
        target = Path(name)
        if not target.exists():
            raise FileNotFoundError(f"--tokenizer: {name!r} is not a local tokenizer directory "
                                    "(no downloads at run time)")
    if backend_only and (Path(target) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(Path(target) / "tokenizer.json"))
    require(f"the tokenizer in {target}", "transformers", modules=("transformers", "tokenizers"))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(target)


def _done_counts(path: Path) -> Counter:
    """How many times each id is in ``path``; a torn last line (interrupted write) is cut off."""
    counts: Counter = Counter()
    if not path.exists():
        return counts
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    for line in data.splitlines():
        try:
            counts[str(json.loads(line)["id"])] += 1
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
    return counts


class Summary:
    """Counts of one run: records read, written, resumed, skipped per reason, thinking tokens."""

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


def _field(rec: dict, key: str):
    for n in _FIELDS[key]:
        if n in rec:
            return rec[n]
    raise TraceError("malformed record", f"missing field {key!r}")


def _trace_and_gold(rec) -> tuple:
    if not isinstance(rec, dict):
        raise TraceError("malformed record", "not a JSON object")
    return _field(rec, "trace"), _field(rec, "gold")


def _invalid_unicode(rec, fields) -> str | None:
    """The first of ``id`` and ``fields`` (keys of ``_FIELDS``) holding a lone surrogate, or
    None. Walked without recursion: a field may be nested as deep as the parser allowed."""
    if not isinstance(rec, dict):
        return None
    todo = [(n, rec[n]) for n in ("id", *(a for f in fields for a in _FIELDS[f])) if n in rec]
    while todo:
        where, value = todo.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return where
        elif isinstance(value, dict):
            todo.extend((where, v) for kv in value.items() for v in kv)
        elif isinstance(value, list):
            todo.extend((where, v) for v in value)
    return None


def _record_id(rec, lineno: int) -> tuple[str, str | None]:
    """``(key, reason it cannot be used or None)``: the record's id as a string, else ``line:N``."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    if rid is None:
        return f"line:{lineno}", None
    if isinstance(rid, (dict, list)):
        return f"line:{lineno}", "id must be a string or a number"
    return str(rid), None


def _score_batch(recs: list, tokenizer, opts: dict) -> list:
    """``(out, before, after)`` or the error, per record, from one ``score_traces`` call; if
    the call fails as a whole (an error that is not a TraceError), each record alone."""
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

    def score(ts, gs, ps):
        return score_traces(ts, gs, tokenizer, beta=opts.get("beta", 0.1), problems=ps,
                            anchor=opts.get("anchor", "anywhere"), judge=opts.get("judge"), errors="return")

    try:
        scores = score(traces, golds, problems)
    except ImportError:
        raise
    except Exception:
        scores = []
        for trace, gold, problem in zip(traces, golds, problems):
            try:
                scores.append(score([trace], [gold], [problem])[0])
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the run
                scores.append(exc)
    for i, s in zip(where, scores):
        results[i] = s if isinstance(s, Exception) else ({"id": None, **s.to_dict()}, s.thinking_tokens,
                                                         s.thinking_tokens)
    return results


def _one(rec, mode: str, tokenizer, opts: dict) -> tuple[dict, int, int]:
    """Build one SBT-E / SBT-D record: ``(out, thinking tokens before, after)``."""
    trace, gold = _trace_and_gold(rec)
    problem = _field(rec, "problem")
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


def _reason(exc: Exception) -> tuple[str, str]:
    """``(reason, detail)`` of a record's failure, for the skipped file and the summary."""
    if isinstance(exc, TraceError):
        return exc.reason, str(exc)
    detail = f"{type(exc).__name__}: {exc}"
    return f"error: {type(exc).__name__}", detail[:2000]


def _check_paths(inp: Path, out: Path | None) -> None:
    if inp.is_dir():
        raise ValueError(f"IN: {inp} is a directory, not a JSONL file")
    if not inp.is_file():
        raise FileNotFoundError(f"IN: no such file: {inp}")
    if out is None:
        return
    if out.resolve() == inp.resolve():
        raise ValueError("OUT: must differ from IN")
    for p, what in ((out, "OUT"), (skipped_path(out), "the skipped file")):
        if p.is_dir():
            raise ValueError(f"{what}: {p} is a directory")
    if skipped_path(out).resolve() == inp.resolve():
        raise ValueError(f"OUT: its skipped file {skipped_path(out)} would overwrite IN")


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def run_jsonl(inp, out, mode: str, tokenizer, *, overwrite: bool = False, progress: bool = True,
              scorer=None, **opts) -> Summary:
    """Score (``mode="score"``) or build (``"sbt-e"``/``"sbt-d"``) every record of ``inp``.

    Parameters
    ----------
    inp : path
        JSONL input (see the module docstring for the fields).
    out : path or None
        Output JSONL (None for scoring only: the summary); skipped records go to
        :func:`skipped_path` of it. A rerun resumes where the last one stopped.
    mode : {"score", "sbt-e", "sbt-d"}
    tokenizer : fast tokenizer or tokenizers.Tokenizer
    overwrite : bool
        Start over instead of resuming.
    progress : bool
        Show a progress bar (:func:`mta.progress.progress_bar`: off in logs and with
        ``MTA_PROGRESS=0``).
    scorer : mta.sbt.ray_scoring.RayScorer, optional
        Score the batches elsewhere (Ray tasks) instead of in this process (``mode="score"``
        only); the records are accounted for and written here exactly as locally.
    **opts
        ``anchor``, ``beta`` (scoring), ``masked_steps`` (building).

    Returns
    -------
    Summary

    Raises
    ------
    ValueError, FileNotFoundError
        Bad mode or paths (nothing is created).
    mta.extras.MissingExtraError
        math-verify is not installed (nothing is created).
    """
    if mode not in ("score", "sbt-e", "sbt-d"):
        raise ValueError(f"method must be 'sbt-e' or 'sbt-d', got {mode!r}")
    inp = Path(inp)
    if out is None and mode != "score":
        raise ValueError("OUT: an output path is required to build data")
    out = None if out is None else Path(out)
    _check_paths(inp, out)
    require(f"mta sbt {'score' if mode == 'score' else 'build'}", "math")
    if scorer is not None and mode != "score":
        raise ValueError(f"scorer: only scoring runs on a scorer, not {mode!r}")
    if mode != "score":
        check_build_options(mode, **{k: v for k, v in opts.items() if k in BUILD_OPTIONS})
    summary = Summary()
    done: Counter = Counter()
    fo = fs = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        skp = skipped_path(out)
        if overwrite:
            for p in (out, skp):
                if p.exists():
                    p.unlink()
        done = _done_counts(out) + _done_counts(skp)
        fo = open(out, "ab")
        fs = open(skp, "ab")
    fields = ("trace", "gold") if mode == "score" else ("trace", "gold", "problem")  # what is read
    seen: Counter = Counter()  # occurrences of each id so far in this pass over the input

    def write(lineno: int, rid: str, res) -> None:
        """Account for one record: ``res`` is ``(out, before, after)``, an exception or a reason."""
        if isinstance(res, tuple):
            record, before, after = res
            record["id"] = rid
            try:  # whole line first: a record that cannot be written never leaves half a line
                line = (_UNICODE_BREAK.sub(_escape, json.dumps(record, ensure_ascii=False, allow_nan=False))
                        + "\n").encode("utf-8")
            except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
                res = exc
            else:
                summary.kept += 1
                if "sbt" in record:
                    summary.rules[record["sbt"]["rule"]] += 1
                summary.tokens_before += before
                summary.tokens_after += after
                if fo is not None:
                    fo.write(line)
                    fo.flush()
                return
        if isinstance(res, Skipped):
            reason, detail = res.reason, res.detail
        else:
            reason, detail = _reason(res) if isinstance(res, Exception) else (res, res)
        summary.skipped[reason] += 1
        if fs is not None:  # ASCII escapes: an id or a detail with a lone surrogate still writes
            fs.write((json.dumps({"id": rid, "line": lineno, "reason": reason, "detail": detail}) + "\n")
                     .encode("ascii"))
            fs.flush()

    pending: list = []  # scoring: (lineno, rid, record or None, reason or None), written in order
    # Batches submitted and not yet written, oldest first: a scorer (Ray) keeps up to its
    # ``window`` of them running while the input is read; they are written in input order.
    inflight: deque = deque()
    window = scorer.window if scorer is not None else 0

    def flush(final: bool = False) -> None:
        if pending:
            todo = [k for k, (_, _, _, reason) in enumerate(pending) if reason is None]
            recs = [pending[k][2] for k in todo]
            handle = (scorer.submit(recs, opts) if scorer is not None else _score_batch(recs, tokenizer, opts)) \
                if todo else []
            inflight.append((list(pending), todo, handle))
            pending.clear()
        while inflight and (final or len(inflight) > window):
            batch, todo, handle = inflight.popleft()
            results = dict(zip(todo, scorer.result(handle) if scorer is not None and todo else handle))
            for k, (lineno, rid, _, reason) in enumerate(batch):
                write(lineno, rid, results[k] if reason is None else reason)

    bar = progress_bar(total=_count_lines(inp), desc=f"sbt {mode}", unit="line", enabled=progress)
    try:
        with open(inp, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                bar.update(1)
                if not raw.strip():
                    continue
                summary.records += 1
                rec, reason = None, None
                try:
                    rec = json.loads(raw)
                except RecursionError:
                    reason = TraceError("malformed JSON", "nested deeper than the parser's recursion limit")
                except ValueError as exc:  # also invalid UTF-8 (UnicodeDecodeError)
                    reason = TraceError("malformed JSON", str(exc)[:500])
                rid, bad_id = _record_id(rec, lineno)
                occurrence = seen[rid]
                seen[rid] += 1
                if occurrence < done[rid]:
                    summary.resumed += 1
                    continue
                if reason is None and occurrence:
                    reason = "duplicate id"
                if reason is None and bad_id:
                    reason = TraceError("malformed record", bad_id)
                if reason is None:
                    where = _invalid_unicode(rec, fields)
                    if where is not None:
                        reason = TraceError("invalid Unicode", f"lone surrogate in {where!r}")
                if mode == "score":
                    pending.append((lineno, rid, rec, reason))
                    if len(pending) >= SCORE_BATCH:
                        flush()
                    continue
                res = reason
                if res is None:
                    try:
                        res = _one(rec, mode, tokenizer, opts)
                    except ImportError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the run
                        res = exc
                write(lineno, rid, res)
        flush(final=True)
    finally:
        bar.close()
        for fh in (fo, fs):
            if fh is not None:
                os.fsync(fh.fileno())
                fh.close()
    return summary
