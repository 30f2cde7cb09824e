"""mta.answers (final-answer extraction and comparison) and mta.data (offline problems)."""

import json
import threading

import pytest

from mta.answers import AnswerCheckTimeout, answers_match, extract_answer, is_correct, parse_number
from mta.data import arithmetic_problems, load_dataset, load_gsm8k, load_jsonl, load_math500


@pytest.mark.parametrize(
    "text,want",
    [
        ("so \\boxed{\\frac{3}{4}} it is", "\\frac{3}{4}"),
        ("first \\boxed{1}, then \\boxed{x^{2}}", "x^{2}"),  # the last box, nested braces
        ("9 * 2 = 18\n#### 1,234", "1,234"),
        ("The answer is: 42.", "42"),
        ("7 + 5 = 12 and then 3", "3"),
        ("no number here", None),
        ("", None),
    ],
)
def test_extract_answer(text, want):
    assert extract_answer(text) == want


@pytest.mark.parametrize(
    "gold,candidate,want",
    [
        ("18", "18.0", True),
        ("1234", "1,234", True),
        ("-5", "-5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("3/4", "0.75", True),
        ("$18", "18", True),
        ("50\\%", "50", True),
        ("18", "19", False),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),  # math-verify decides
        ("p - q", "-q + p", True),
        ("x^2", "x^3", False),
        ("1/0", "2", False),  # no value
        ("", "", False),
    ],
)
def test_answers_match(gold, candidate, want):
    assert answers_match(gold, candidate) is want


def test_parse_number_only_reads_plain_numbers():
    assert parse_number("\\frac{-3}{4}") == parse_number("-0.75")
    assert parse_number("2^{10}") is None and parse_number("4!") is None and parse_number("2x+3") is None


def test_is_correct_and_bad_input():
    assert is_correct("... so she earns \\boxed{18} dollars", "18")
    assert not is_correct("I do not know", "18")
    with pytest.raises(TypeError, match="candidate must be a str"):
        answers_match("1", 1)
    with pytest.raises(ValueError, match="timeout_s"):
        answers_match("x", "y", timeout_s=0)


def test_math_verify_off_the_main_thread_is_bounded():
    """Off the main thread math-verify's alarms are off; the worker process bounds it."""
    out = {}

    def check():
        out["same"] = answers_match("x^2 + 1", "1 + x^2", timeout_s=30)
        try:
            out["tower"] = answers_match("9^{9^{9^{9}}}", "9^{9^{9^{9}}} + 1", timeout_s=0.01)
        except AnswerCheckTimeout:
            out["tower"] = "timeout"

    t = threading.Thread(target=check)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive()
    assert out["same"] is True and out["tower"] in (False, "timeout")


def test_offline_data_sets():
    gsm = load_gsm8k(limit=5)
    assert len(gsm) == 5 and gsm[0].answer == "18" and "Janet" in gsm[0].question
    assert len(load_gsm8k()) == 1319 and len(load_math500()) == 500
    math = load_math500(limit=20)
    assert all(answers_match(p.answer, p.answer) for p in math)
    assert [p.id for p in load_dataset("gsm8k", limit=2)] == [p.id for p in gsm[:2]]


def test_arithmetic_problems_are_right_and_reproducible():
    problems = arithmetic_problems(50, seed=3)
    assert problems == arithmetic_problems(50, seed=3)
    for p in problems:
        a, op, b = p.question.removeprefix("What is ").removesuffix("?").split()
        assert int(p.answer) == eval(f"{a} {op} {b}")  # noqa: S307 - our own generated text
    with pytest.raises(ValueError, match="ops"):
        arithmetic_problems(3, ops="/")


def test_user_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "answer": "2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    with pytest.raises(ValueError, match=r"mine.jsonl:2: no gold answer"):
        load_jsonl(path)
    assert load_jsonl(path, limit=1)[0].answer == "2"
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("gsm9k")


# --- bounded math-verify, LaTeX-mode values (issue 14 items 3 and 6) ---------------------------

def test_power_tower_on_the_main_thread_times_out_instead_of_saying_false():
    """math-verify's own alarm turns a timeout into False; ours raises, so callers can count it."""
    import time

    from mta.answers import exact_value

    for check in (lambda: answers_match("9^{9^{9^{9}}}", "1", timeout_s=0.3),
                  lambda: exact_value("9^{9^{9^{9}}}", timeout_s=0.3)):
        start = time.monotonic()
        with pytest.raises(AnswerCheckTimeout):
            check()
        assert time.monotonic() - start < 5
    assert answers_match("x^2 + 1", "1 + x^2")  # the timer is gone: later checks work


def test_a_timer_set_by_the_caller_survives_a_check():
    import signal

    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert answers_match("x + x", "2x")
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 25.0 < left <= 30.0 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize(
    "answer,value",
    [("2^{10}", 1024), ("4!", 24), ("-5", -5), ("\\frac{3}{6}", 0.5), ("\\sqrt{4}", 2), ("3^{-1}", "1/3"),
     ("1,000", 1000), (".5", 0.5), ("\u22125", -5), ("2x+3", None), ("\\sqrt{2}", None), ("\\pi", None), ("", None)],
)
def test_exact_value_reads_latex_mode(answer, value):
    from fractions import Fraction

    from mta.answers import exact_value

    assert exact_value(answer) == (None if value is None else Fraction(value))


def test_golds_without_backslash_are_expressions_not_their_first_number():
    assert answers_match("2^{10}", "1024") and not answers_match("2^{10}", "2")
    assert answers_match("4!", "24") and not answers_match("4!", "4")
    assert answers_match("2x+3", "3 + 2x") and not answers_match("2x+3", "2")
    from mta.answers import latex_text

    assert latex_text("2^{10}") == "$2^{10}$" and latex_text("$x$") == "$x$" and latex_text("$18") == "$\\$18$"


def test_exact_value_bad_input():
    from mta.answers import exact_value

    with pytest.raises(TypeError, match="answer must be a str"):
        exact_value(5)
    with pytest.raises(ValueError, match="timeout_s"):
        exact_value("x", timeout_s=-1)
