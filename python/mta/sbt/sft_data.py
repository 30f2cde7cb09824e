"""SBT training records (``mta sbt build``'s JSONL) as templated token ids with loss masks.

A record holds chat ``messages`` (the last one the assistant's) and ``masked_spans``:
character spans of the assistant content left out of the loss. :func:`template_example`
renders the whole conversation with the tokenizer's chat template, finds the assistant
content in it, tokenises once with offsets and marks the trained tokens: those of the
assistant turn (its content and the template's end-of-turn token) that overlap no masked
span. The prompt, the masked spans and anything after the end-of-turn token get 0.

The same ids and mask feed ``mta sbt train`` (:mod:`mta.sbt.sft`) and the TRL export
(:func:`write_trl`): pre-tokenised ``input_ids`` with ``assistant_masks``, the column TRL's
``SFTTrainer`` turns into ``labels = -100`` on its own (trl 1.16: ``assistant_masks``
always applies; ``completion_mask`` only with ``completion_only_loss``).
"""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SFTExample", "check_records", "read_records", "template_example", "tokenize_records", "write_trl"]


@dataclass
class SFTExample:
    """One record, templated: ``input_ids`` and ``loss_mask`` (1 = trained) of equal length."""

    id: str
    input_ids: list[int]
    loss_mask: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(self.loss_mask)


def _check_record(rec, where: str) -> tuple[list[dict], list[tuple[int, int]]]:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: a record must be a JSON object")
    messages = rec.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"{where}: field 'messages' must be a non-empty list of chat messages "
                         "(mta sbt build writes it)")
    last = messages[-1]
    if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        raise ValueError(f"{where}: field 'messages' must end with the assistant's message (role 'assistant', "
                         "string content)")
    if "masked_spans" not in rec:
        raise ValueError(f"{where}: no 'masked_spans' field: a record needs its loss mask (character spans of the "
                         "assistant content left out of the loss, [] for none), as mta sbt build writes it")
    spans = rec["masked_spans"]
    n = len(last["content"])
    if not isinstance(spans, list):
        raise ValueError(f"{where}: field 'masked_spans' must be a list of [start, end] pairs")
    out = []
    for span in spans:
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)
                or not 0 <= span[0] <= span[1] <= n):
            raise ValueError(f"{where}: field 'masked_spans' holds {span!r}, not a [start, end] pair inside the "
                             f"assistant content (0..{n})")
        out.append((span[0], span[1]))
    return messages, sorted(out)


def read_records(path: str | Path) -> list[dict]:
    """The records of a JSONL file, each checked (``ValueError`` naming the line and the field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DATA: no such file: {path}")
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not JSON ({error.msg})") from None
        _check_record(rec, where)
        rec.setdefault("id", f"line:{line_no}")
        rec["_where"] = where
        records.append(rec)
    if not records:
        raise ValueError(f"DATA: {path} holds no records")
    return records


def template_example(tokenizer, messages: list[dict], masked_spans, *, record_id: str = "",
                     where: str = "record") -> SFTExample:
    """Templated ids and loss mask of one conversation (rules in the module docstring).

    Raises
    ------
    ValueError
        The tokenizer has no chat template, or its template does not reproduce the
        assistant content verbatim after the generation prompt.
    """
    messages, spans = _check_record({"messages": messages, "masked_spans": masked_spans}, where)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer: has no chat template (an SBT record is a chat conversation)")
    content = messages[-1]["content"]
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    start = full.find(content, len(prompt)) if full.startswith(prompt) else -1
    if start < 0:
        raise ValueError(f"{where}: the chat template does not render the assistant content verbatim after the "
                         "generation prompt, so its masked spans cannot be placed")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    first = bisect_left(starts, start)  # tokens that begin inside the assistant turn are trained
    mask = [0] * first + [1] * (len(ids) - first)
    end_of_content = start + len(content)
    eos = tokenizer.eos_token_id
    for i in range(first, len(ids)):  # the end-of-turn token is trained; the template's tail after it is not
        if ends[i] > end_of_content and ids[i] == eos:
            mask[i + 1:] = [0] * (len(ids) - i - 1)
            break
    for a, b in spans:
        if a == b:
            continue
        for i in range(bisect_left(ends, start + a + 1), bisect_left(starts, start + b)):
            mask[i] = 0
    return SFTExample(str(record_id), ids, mask)


def check_records(records: list[dict]) -> None:
    """``ValueError`` naming the first record (``records[i]`` or its file line) and field that is wrong."""
    if not records:
        raise ValueError("records: no records to train on")
    for i, rec in enumerate(records):
        _check_record(rec, rec.get("_where", f"records[{i}]") if isinstance(rec, dict) else f"records[{i}]")


def tokenize_records(records: list[dict], tokenizer, *, max_length: int | None = None) -> list[SFTExample]:
    """:func:`template_example` of every record; ``max_length`` keeps the first tokens of longer ones."""
    check_records(records)
    out = []
    for rec in records:
        ex = template_example(tokenizer, rec["messages"], rec["masked_spans"], record_id=rec.get("id", ""),
                              where=rec.get("_where", "record"))
        if max_length is not None and len(ex.input_ids) > max_length:
            ex = SFTExample(ex.id, ex.input_ids[:max_length], ex.loss_mask[:max_length])
        if ex.trained_tokens == 0:
            raise ValueError(f"{rec.get('_where', 'record')}: no token is trained (everything is masked or cut "
                             "at max_length)")
        out.append(ex)
    return out


def write_trl(examples: list[SFTExample], out: str | Path) -> Path:
    """JSONL that TRL's ``SFTTrainer`` trains on as is: ``input_ids`` and ``assistant_masks``
    (its loss mask) per line, plus the record's ``id``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"id": ex.id, "input_ids": ex.input_ids, "assistant_masks": ex.loss_mask}) + "\n")
    return out
