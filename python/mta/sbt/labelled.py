"""The hand-labelled SBT traces: for each, the step a careful reader judges to reach the answer.

``data/labelled_traces.txt`` holds the shipped sample traces (by id) and traces written by
hand from GSM8K and MATH-500 problems (see the file's header for its format). Each record
names its first and second correct steps by a quote of the step, or ``@N``, or ``none``.
The set measures answer judges (``benchmarks/bench_sbt.py``) and drives the tests that
check the SBT-E / SBT-D rules on every labelled trace.

>>> traces = load_labelled()                      # doctest: +SKIP
>>> traces[0].first_correct_step, traces[0].tags  # doctest: +SKIP
(3, ('redundant-verification',))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mta.sbt.traces import THINK_CLOSE, THINK_OPEN, split_steps

__all__ = ["LABELLED_TRACES", "LabelledTrace", "load_labelled", "thinking_of"]

DATA = Path(__file__).parent / "data"
LABELLED_TRACES = DATA / "labelled_traces.txt"
_KEYS = ("source", "gold", "first", "second", "tags", "note", "sample")


@dataclass(frozen=True)
class LabelledTrace:
    id: str
    source: str
    problem: str
    gold: str
    trace: str
    first_correct_step: int | None    # 1-based; None: the trace never reaches the answer
    second_correct_step: int | None
    tags: tuple[str, ...]
    note: str

    @property
    def steps(self) -> list[str]:
        """The thinking's steps (a trace without ``</think>``: everything after ``<think>``)."""
        thinking = thinking_of(self.trace)
        return [thinking[s:e] for s, e in split_steps(thinking)]


def thinking_of(trace: str) -> str:
    """The thinking of a trace, also when it has no ``</think>`` (a truncated trace)."""
    close = trace.find(THINK_CLOSE)
    head = trace if close < 0 else trace[:close]
    open_ = head.find(THINK_OPEN)
    return (head[open_ + len(THINK_OPEN):] if open_ >= 0 else head).strip()


def _step_of(label: str, steps: list[str], where: str) -> int | None:
    label = label.strip()
    if label == "none":
        return None
    if label.startswith("@"):
        n = int(label[1:])
        if not 1 <= n <= len(steps):
            raise ValueError(f"{where}: step {label} outside the {len(steps)} steps")
        return n
    for i, step in enumerate(steps, start=1):
        if label in step:
            return i
    raise ValueError(f"{where}: no step contains {label!r}")


def _records(text: str):
    """(id, fields, problem, trace) per record of the labelled file."""
    blocks = text.split("\n### ")
    for block in blocks[1:]:
        head, _, body = block.partition("\n")
        fields, problem, trace, section = {}, [], [], None
        for line in body.split("\n"):
            if section is None and ":" in line and line.split(":", 1)[0] in _KEYS:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
            elif section is None and line in ("problem:", "trace:"):
                section = problem if line == "problem:" else trace
            elif section is problem and line == "trace:":
                section = trace
            elif section is not None:
                section.append(line)
            elif line.strip() and not line.startswith("#"):  # "#" lines between records: comments
                raise ValueError(f"labelled trace {head.strip()}: unexpected line {line!r}")
        yield head.strip(), fields, "\n".join(problem).strip(), "\n".join(trace).strip()


def load_labelled(path: Path | str = LABELLED_TRACES) -> list[LabelledTrace]:
    """Every labelled trace, in file order (shipped samples resolved from
    ``sample_traces.jsonl``); quotes resolved to 1-based step numbers."""
    samples = {}
    for line in (DATA / "sample_traces.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        samples[rec["id"]] = rec
    out = []
    for rid, fields, problem, trace in _records(Path(path).read_text(encoding="utf-8")):
        if fields.get("sample") == "yes":
            rec = samples[rid]
            problem, trace, gold, source = rec["problem"], rec["trace"], rec["gold"], "sample_traces.jsonl"
        else:
            gold, source = fields["gold"], fields.get("source", "")
        thinking = thinking_of(trace)
        steps = [thinking[s:e] for s, e in split_steps(thinking)]
        first = _step_of(fields["first"], steps, f"{rid} first")
        second = _step_of(fields["second"], steps, f"{rid} second")
        if second is not None and (first is None or second <= first):
            raise ValueError(f"{rid}: second correct step {second} not after the first ({first})")
        tags = tuple(t.strip() for t in fields.get("tags", "").split(",") if t.strip())
        out.append(LabelledTrace(rid, source, problem, gold, trace, first, second, tags, fields.get("note", "")))
    ids = [t.id for t in out]
    if len(ids) != len(set(ids)):
        raise ValueError("labelled traces: duplicate ids")
    return out
