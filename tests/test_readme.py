"""Every ```python block of README.md runs as written (issue 14 item 15).

Each block runs alone, in a fresh namespace, so it must carry its own imports and inputs:
a reader copies one block, not the page. A directive in an HTML comment on the line just
before a block (invisible on GitHub) says how it runs:

* ``<!-- readme-test: smollm2 -->``: needs the real SmolLM2 model (pytest marker ``smollm2``);
* ``<!-- readme-test: gemma -->``: also needs Gemma-3-270M; opt-in as ``tests/test_wsd_gemma.py``
  (runs only under ``pytest -m gemma``);
* ``<!-- readme-test: skip REASON -->``: not runnable on purpose (e.g. needs a GPU or a
  server); the reason is required.

Blocks run with progress bars off and keep to small shapes (a few seconds each on 2 cores).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_DIRECTIVE = re.compile(r"<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->")


def python_blocks(text: str) -> list[tuple[int, str, str, str]]:
    """``(line of the opening fence, code, directive, argument)`` of every ```python block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            if j == len(lines):
                raise AssertionError(f"README.md:{start + 1}: unclosed ```python block")
            m = _DIRECTIVE.fullmatch(lines[start - 1].strip()) if start else None
            out.append((start + 1, "\n".join(lines[start + 1:j]) + "\n", m.group(1) if m else "run",
                        m.group(2) if m else ""))
            i = j
        i += 1
    return out


BLOCKS = python_blocks(README.read_text())


def _params():
    for line, code, directive, arg in BLOCKS:
        marks = [pytest.mark.smollm2] if directive in ("smollm2", "gemma") else []
        if directive == "gemma":
            marks.append(pytest.mark.gemma)
        if directive == "skip":
            marks.append(pytest.mark.skip(reason=f"README.md:{line}: {arg}"))
        yield pytest.param(line, code, marks=marks, id=f"line{line}")


def test_directives_are_known_and_skips_say_why():
    assert len(BLOCKS) >= 7
    for line, _, directive, arg in BLOCKS:
        assert directive in ("run", "smollm2", "gemma", "skip"), f"README.md:{line}: unknown directive {directive!r}"
        assert directive != "skip" or arg, f"README.md:{line}: a skipped block must say why"


def test_block_parser():
    text = "x\n```python\na = 1\n```\n<!-- readme-test: skip needs a GPU -->\n```python\nb\n```\n```bash\nc\n```\n"
    assert python_blocks(text) == [(2, "a = 1\n", "run", ""), (6, "b\n", "skip", "needs a GPU")]


@pytest.mark.parametrize("line, code", list(_params()))
def test_readme_block_runs(line, code, monkeypatch, request):
    if "gemma" in [m.name for m in request.node.iter_markers()] and "gemma" not in (
            request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: run with pytest -m gemma (make test-gemma)")
    monkeypatch.setenv("MTA_PROGRESS", "0")
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": f"readme_block_{line}"})
