"""The evaluation's record log: one JSON line per (model, technique, problem), append-only.

The log is what makes a run resumable. A batch's lines are written with one ``write``
then flushed and fsync'ed, so a run killed at any point leaves complete lines plus at most
one torn last line; opening the log again drops that torn tail (and says so), and the run
goes on from the problems that have no line yet. A line that does not parse anywhere else,
or a key seen twice, is an error naming the line: nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["RecordLog"]


def record_key(record: dict) -> tuple[str, str, str]:
    return record["model"], record["technique"], record["item"]


class RecordLog:
    """The records of a run directory's ``records.jsonl``, loaded once, appended per batch."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = []
        self.keys: set[tuple[str, str, str]] = set()
        self.repaired_bytes = 0
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: the process died inside a write
            self.repaired_bytes = len(data) - end
            with open(self.path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            print(f"mta eval: {self.path}: dropped a partial last line ({self.repaired_bytes} bytes) left by an "
                  "interrupted run; that batch runs again", file=sys.stderr)
        for line_no, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = record_key(record)
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{self.path}:{line_no}: not an evaluation record ({error}); "
                                 "fix or remove the line, or start a new run directory") from None
            if key in self.keys:
                raise ValueError(f"{self.path}:{line_no}: a second record for {key}")
            self.keys.add(key)
            self.records.append(record)

    def done(self, model: str, technique: str) -> set[str]:
        """Problem ids already recorded for ``(model, technique)``."""
        return {item for m, t, item in self.keys if m == model and t == technique}

    def append(self, records: list[dict]) -> None:
        """Write ``records`` (one batch) in one write, then flush and fsync."""
        for r in records:
            if record_key(r) in self.keys:
                raise ValueError(f"a record for {record_key(r)} is already in {self.path}")
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        for r in records:
            self.keys.add(record_key(r))
            self.records.append(r)
