"""mta.sbt: step splitting, markers, κ/η/score, SBT-E/SBT-D against hand-checked goldens,
mask consistency, skip reasons, resume, CLI end to end, bad inputs."""

import json
from pathlib import Path

import pytest

from mta.sbt import (SAMPLE_TRACES, AnswerChecker, TraceError, build_example, find_markers,
                     load_tokenizer, marker_spans, run_jsonl, score_trace, skipped_path, split_steps,
                     split_trace, token_mask)

GOLDEN = Path(__file__).parent / "data" / "sbt_golden"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _records():
    out = {}
    for line in SAMPLE_TRACES.read_text().splitlines():
        try:
            r = json.loads(line)
            out[r["id"]] = r
        except ValueError:
            pass
    return out


def test_split_steps_and_trace():
    t = split_trace("<think>\nA.\n\nB.\n\n\n\nC.\n \n D.\n</think>\n\nans")
    assert [t.thinking[s:e] for s, e in t.steps] == ["A.", "B.", "C.", "D."]
    assert t.answer == "ans"
    assert split_steps("one") == [(0, 3)]
    for trace, reason in [("no close", "no </think>"), ("<think>\n\n</think>x", "empty thinking"),
                          ("<think>a</think>  ", "no answer after </think>")]:
        with pytest.raises(TraceError) as e:
            split_trace(trace)
        assert e.value.reason == reason


def test_markers_word_boundaries_multiword_overlap():
    assert find_markers("Butter is good. Checking. Hmmmm.") == []
    # anywhere (the default, Eq. 2): mid-sentence markers count
    ms = find_markers("Hmm, wait, let me check. But maybe not.\n\nMaybe I should consider x.")
    assert [m.marker for m in ms] == ["Hmm", "Wait", "Let me check", "Check", "But", "Maybe", "Maybe I should consider"]
    assert [m.marker for m in find_markers("it might be so, but no")] == ["Might", "But"]
    # the sentence-anchored mode stays as an option
    ms = find_markers("Hmm, wait, let me check. But maybe not.\n\nMaybe I should consider x.", anchor="sentence")
    assert [m.marker for m in ms] == ["Hmm", "Wait", "Let me check", "But", "Maybe I should consider"]
    assert find_markers("it might be so, but no", anchor="sentence") == []
    # the paper's phrases as listed, first letter in either case (the braking automaton's variants)
    assert find_markers("WAIT. Hold   on. double check. hmm") == [mk.MarkerMatch(24, 29, "Check"),
                                                            mk.MarkerMatch(31, 34, "Hmm")]
    # nested occurrences are merged: covered once
    text = "Let me just double-check."
    assert len(find_markers(text)) == 2
    assert marker_spans(text) == [(0, 24)]
    assert [m.marker for m in find_markers("Hold on. Going back", anchor="sentence")] == ["Hold on", "Going back"]
    with pytest.raises(ValueError, match="anchor"):
        find_markers("x", anchor="nowhere")


def test_answer_checker():
    c = AnswerChecker("18")
    assert c.step_reaches("so 9 * 2 = $18.") and c.step_reaches("that is 18.00 dollars.")
    assert not c.step_reaches("16 - 3 - 4 = 9") and not c.step_reaches("so it is 180 or 1,800.")
    assert not c.step_reaches("for 18 chickens: 3 * 18 = 54 cups.")  # an operand
    h = AnswerChecker("\\frac{1}{2}")
    assert h.step_reaches("That gives 1/2.") and h.step_reaches("= 0.5") and h.step_reaches("x = \\frac{2}{4}")
    assert AnswerChecker("1,000").step_reaches("a total of 500 + 500 = 1000 apples")
    with pytest.raises(TraceError, match="no gold"):
        AnswerChecker("  ")


def test_score_hand_checked(tok):
    # 4 steps; markers: "Wait" (step 3), "Hmm" (step 4); answer 18 first in step 2
    trace = ("<think>\n16 - 3 - 4 = 9 eggs.\n\n9 * 2 = 18 dollars.\n\nWait, 18 again.\n\nHmm, 18.\n</think>\n\n18")
    s = score_trace(trace, "18", tok)
    thinking = split_trace(trace).thinking
    offsets = tok.backend_tokenizer.encode(thinking, add_special_tokens=False).offsets
    n_wait = sum(1 for a, b in offsets if a < thinking.index("Wait") + 4 and b > thinking.index("Wait"))
    n_hmm = sum(1 for a, b in offsets if a < thinking.index("Hmm") + 3 and b > thinking.index("Hmm"))
    assert (s.steps, s.first_correct_step, s.eta) == (4, 2, 0.5)
    assert s.thinking_tokens == len(offsets) and s.marker_tokens == n_wait + n_hmm == 3  # "Wait" one token, "Hmm" two (H, mm)
    assert s.kappa == pytest.approx(3 / len(offsets))
    assert s.score == pytest.approx(0.1 * s.kappa + 0.9 * 0.5)
    never = score_trace(trace, "42", tok)
    assert never.eta is None and never.score is None
    with pytest.raises(ValueError, match="beta"):
        score_trace(trace, "18", tok, beta=2.0)
    with pytest.raises(ValueError, match="tokenizer"):
        score_trace(trace, "18")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_build_golden(tok, path):
    g = json.loads(path.read_text())
    r = _records()[g["id"]]
    ex = build_example(r["trace"], r["gold"], g["method"], tok, problem=r["problem"])
    assert ex.content == g["content"]
    assert [list(s) for s in ex.masked_spans] == g["masked_spans"]
    assert (ex.braked, ex.steps_kept, ex.steps_masked, ex.first_correct_step) == (
        g["braked"], g["steps_kept"], g["steps_masked"], g["first_correct_step"])
    phrase = "time to end the thinking." if g["method"] == "sbt-e" else "more concisely."
    assert phrase in ex.content and ex.content.count("</think>") == 1


def test_mask_spans_match_token_masks(tok):
    for r in list(_records().values())[:28]:
        for method in ("sbt-e", "sbt-d"):
            try:
                ex = build_example(r["trace"], r["gold"], method, tok)
            except TraceError:
                continue
            ids, mask = token_mask(tok, ex.content, ex.masked_spans)
            offs = tok.backend_tokenizer.encode(ex.content, add_special_tokens=False).offsets
            assert len(ids) == len(mask) == len(offs)
            for (a, b), m in zip(offs, mask):
                inside = any(a < e and b > s for s, e in ex.masked_spans)
                assert m == (0 if inside else 1)
            masked_text = "".join(ex.content[s:e] for s, e in ex.masked_spans)
            assert "</think>" not in masked_text and "Wait, I've" not in masked_text


def test_skip_reasons_and_resume(tok, tmp_path):
    out = tmp_path / "e.jsonl"
    s = run_jsonl(SAMPLE_TRACES, out, "sbt-e", tok, progress=False)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    skipped = [json.loads(x) for x in skipped_path(out).read_text().splitlines()]
    assert s.records == len(lines) + len(skipped) == 34
    assert {x["reason"] for x in skipped} == {"no </think>", "no answer after </think>", "never correct",
                                              "empty thinking", "malformed record", "malformed JSON"}
    assert lines[0]["messages"][0]["role"] == "user" and lines[0]["messages"][1]["role"] == "assistant"
    # interrupted run: keep 10 records and a torn line, then resume
    keep = out.read_text().splitlines()[:10]
    out.write_text("\n".join(keep) + "\n" + keep[10 - 1][:20])
    skipped_path(out).unlink()
    s2 = run_jsonl(SAMPLE_TRACES, out, "sbt-e", tok, progress=False)
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(lines) and s2.resumed == 10
    s3 = run_jsonl(SAMPLE_TRACES, out, "sbt-e", tok, progress=False)
    assert s3.resumed == 34 and s3.kept == 0
    run_jsonl(SAMPLE_TRACES, out, "sbt-e", tok, progress=False, overwrite=True)
    assert len(out.read_text().splitlines()) == len(lines)


def test_cli_end_to_end(tmp_path, capsys):
    from mta.cli import main

    out = tmp_path / "d.jsonl"
    assert main(["sbt", "build", str(SAMPLE_TRACES), str(out), "--method", "sbt-d", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "skipped: malformed JSON" in table and "thinking tokens after" in table
    rec = json.loads(out.read_text().splitlines()[0])
    assert len(rec["token_ids"]) == len(rec["token_mask"])
    assert main(["sbt", "score", str(SAMPLE_TRACES), "--out", str(tmp_path / "s.jsonl"), "--no-progress"]) == 0
    scores = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert all(0 <= x["kappa"] <= 1 for x in scores)
    assert main(["sbt", "score", str(tmp_path / "missing.jsonl"), "--no-progress"]) == 2
    assert "IN: no such file" in capsys.readouterr().err
    assert main(["sbt", "build", str(SAMPLE_TRACES), str(out), "--method", "sbt-e", "--masked-steps", "-1"]) == 2
    assert "--masked-steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sbt", "build", str(SAMPLE_TRACES), str(out), "--method", "sbt-x"])
    assert main(["sbt", "score", str(SAMPLE_TRACES), "--tokenizer", str(tmp_path / "nope")]) == 2
    assert "--tokenizer" in capsys.readouterr().err


def test_bad_arguments(tok):
    r = _records()["gsm8k-0"]
    with pytest.raises(ValueError, match="method"):
        build_example(r["trace"], r["gold"], "sbt-x", tok)
    with pytest.raises(ValueError, match="masked_steps"):
        build_example(r["trace"], r["gold"], "sbt-e", tok, masked_steps=-1)
    with pytest.raises(ValueError, match="tau1"):
        build_example(r["trace"], r["gold"], "sbt-d", tok, tau1=0.3, tau2=0.2)


# --- fast paths against the reference ---------------------------------------------------------

import random  # noqa: E402

import numpy as np  # noqa: E402

from mta.sbt import batch_token_offsets, score_trace_reference, score_traces  # noqa: E402
from mta.sbt import tokens  # noqa: E402
from mta.sbt import markers as mk  # noqa: E402


def _outcome(fn):
    try:
        return fn()
    except TraceError as exc:
        return ("error", exc.reason)


def _as_outcomes(results):
    return [("error", r.reason) if isinstance(r, TraceError) else r for r in results]


def _long_traces(n, steps_per_trace=60):
    """Long traces as in benchmarks/bench_sbt.py: a sample's steps among other samples' steps."""
    recs = [r for r in _records().values() if r["id"].startswith(("gsm8k", "math"))]
    steps = [split_trace(r["trace"]) for r in recs]
    out = []
    for i in range(n):
        own = [steps[i].thinking[s:e] for s, e in steps[i].steps]
        filler = [t.thinking[s:e] for j, t in enumerate(steps) if j != i for s, e in t.steps][: steps_per_trace]
        cut = len(filler) * (i % 5) // 5
        body = "\n\n".join(filler[:cut] + own + filler[cut:])
        out.append((f"<think>\n{body}\n</think>\n\n{steps[i].answer}", recs[i]["gold"]))
    return out


EDGE_CASES = [
    ("<think>\n\n</think>\n\n2", "2"),                                   # empty thinking
    ("<think>\nJust 2+2=4.\n</think>\n\n4", "4"),                        # no marker ("Just" alone is none)
    ("<think>\n7*6 is 48.\n\nWait, 48.\n</think>\n\n48", "42"),            # never correct
    ("<think>\nNo numbers here at all.\n\nHmm.\n</think>\n\nx", "5"),        # no number, never correct
    ("<think>\n“Wait,” she said — 18 apples… Hmm, ١٨ again.\n\nİ think: ſo 18.\n</think>\n\n18", "18"),
    ("<think>\nThe total is ١٨ dollars.\n\nWait, it is 18.\n</think>\n\n18", "18"),  # Arabic-Indic digits
    ("<think>\nWe get 36/2.\n\nBut 18 it is.\n</think>\n\n18", "18"),          # a fraction equal to the gold
    ("<think>\nSo \\dfrac{36}{2} here.\n\nCheck: 18.\n</think>\n\n18", "18"),
    ("<think>\n16-3 = 13.\n\nMaybe it is: -3.\n</think>\n\n-3", "-3"),      # binary minus vs sign
    ("<think>\nAbout 1,000 apples.\n\nHmm, 1000.\n</think>\n\n1000", "1,000"),
    ("<think>\nIt is 0018.00 or so.\n\nWait, 18.\n</think>\n\n18", "18"),     # leading / trailing zeros
    ("<think>\nHalf: 0.50 of it.\n\nSo 1/2.\n</think>\n\n0.5", "0.5"),
    ("<think>\nThat gives 2.25.\n\nHmm, 9/4.\n</think>\n\n2.25", "2.25"),
    ("<think>\nThe sum is 0.\n\nWait, 0.\n</think>\n\n0", "0"),
    ("<think>\nOne third: 1/3.\n\nHmm, \\frac{2}{6}.\n</think>\n\n1/3", "\\frac{1}{3}"),
    ("<think>\nx equals 2 here.\n\nBut then $\\sqrt{2}$.\n</think>\n\n\\sqrt{2}", "\\sqrt{2}"),  # non-numeric gold
    ("<think>\nWait\n</think>\n\nx", "3"),
    ("no close tag", "3"),
    ("<think>\n2 + 2 = 4\n</think>\n\n4", None),                            # no gold
]


def test_fast_paths_equal_reference(tok):
    cases = [(r.get("trace"), r.get("gold")) for r in _records().values()] + EDGE_CASES + _long_traces(6)
    traces, golds = [t for t, _ in cases], [g for _, g in cases]
    ref = [_outcome(lambda t=t, g=g: score_trace_reference(t, g, tok)) for t, g in cases]
    one = [_outcome(lambda t=t, g=g: score_trace(t, g, tok)) for t, g in cases]
    assert one == ref
    assert _as_outcomes(score_traces(traces, golds, tok, errors="return")) == ref
    # precomputed offsets: lists (as the tokenizer gives them) and integer arrays
    ok = [i for i, r in enumerate(ref) if not isinstance(r, tuple)]
    offs = batch_token_offsets(tok, [split_trace(traces[i]).thinking for i in ok])
    assert offs == [tok.backend_tokenizer.encode(split_trace(traces[i]).thinking, add_special_tokens=False).offsets
                    for i in ok]
    arrays = [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in offs]
    expect = [ref[i] for i in ok]
    sub_t, sub_g = [traces[i] for i in ok], [golds[i] for i in ok]
    assert [score_trace(t, g, offsets=o) for t, g, o in zip(sub_t, sub_g, offs)] == expect
    assert [score_trace_reference(t, g, offsets=o) for t, g, o in zip(sub_t, sub_g, offs)] == expect
    assert score_traces(sub_t, sub_g, offsets=offs) == expect
    assert score_traces(sub_t, sub_g, offsets=arrays) == expect
    # the edge cases say what they claim
    by_trace = dict(zip(traces, ref))
    assert by_trace[EDGE_CASES[0][0]] == ("error", "empty thinking")
    assert by_trace[EDGE_CASES[1][0]].marker_tokens == 0
    assert by_trace[EDGE_CASES[2][0]].score is None
    assert by_trace[EDGE_CASES[5][0]].first_correct_step == 2  # ١٨ is not a plain number
    assert by_trace[EDGE_CASES[6][0]].first_correct_step == 1  # 36/2
    assert by_trace[EDGE_CASES[8][0]].first_correct_step == 2  # "16-3" is no -3


def test_score_traces_process_pool(tok):
    cases = [(r.get("trace"), r.get("gold")) for r in _records().values()] + EDGE_CASES
    traces, golds = [t for t, _ in cases], [g for _, g in cases]
    expect = _as_outcomes(score_traces(traces, golds, tok, errors="return"))
    assert _as_outcomes(score_traces(traces, golds, tok, errors="return", workers=2, chunk_size=8)) == expect


def test_score_traces_arguments(tok):
    t, g = EDGE_CASES[1]
    with pytest.raises(TraceError, match="empty thinking"):
        score_traces([t, EDGE_CASES[0][0]], [g, "2"], tok)
    with pytest.raises(ValueError, match="golds"):
        score_traces([t], [g, g], tok)
    with pytest.raises(ValueError, match="offsets"):
        score_traces([t], [g], offsets=[])
    with pytest.raises(ValueError, match="tokenizer"):
        score_traces([t], [g])
    with pytest.raises(ValueError, match="errors"):
        score_traces([t], [g], tok, errors="ignore")
    with pytest.raises(ValueError, match="beta"):
        score_traces([t], [g], tok, beta=-1)
    with pytest.raises(ValueError, match="workers"):
        score_traces([t], [g], tok, workers=0)
    with pytest.raises(ValueError, match="anchor"):
        score_traces([t], [g], tok, anchor="nowhere")
    assert score_traces([], [], tok) == []


def _random_text(rng, pieces, n):
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, n)))


MARKER_PIECES = [
    "Wait", "wait", "WAIT", "but", "But", "Hmm", "hmmm", "Hmmmm", "maybe I should consider", "Maybe",
    "Let me just double-check", "double check", "let me   check", "Check", "Butter", "_But", "(Wait", "“Hmm",
    "*Wait*", ". ", ", ", "—", "-", "–", "…", "\n", "\n\n", " ", "\t", "x", "18", "the", ":", ";", "!", "?", "'",
    '"', "ſ", "İ", "K", "Hold on", "hold\ton", "Going  back", "perhaps", "Not sure", "not", "sure", "Trace back",
    "Retry", "Recheck", "re", "check", "Instead of", "_", "(", "[", "{", "`", "é", "Just to be thorough",
    "Going back", "backtrack", "Let me try another", "another", "Might", "mightily", "Hmmm", "hmm",
]


def test_marker_fast_path_equals_every_position_rule():
    rng = random.Random(0)
    c = mk._compiled(mk.SBT_MARKERS)
    texts = [_random_text(rng, MARKER_PIECES, 30) for _ in range(4000)]
    texts += [split_trace(t).thinking for t, _ in _long_traces(3)]
    for text in texts:
        for anchor in ("sentence", "anywhere"):
            ref = mk._find_markers_every_position(text, c, anchor)
            assert find_markers(text, anchor=anchor) == ref, text
            assert marker_spans(text, anchor=anchor) == mk.merge_spans(ref), text
    # custom markers starting with punctuation take the every-position path
    assert find_markers("ok. (aside) and (aside)", markers=["(aside)"], anchor="sentence") == [
        mk.MarkerMatch(4, 11, "(aside)")]
    # overlapping markers of a custom list: one starts inside another and ends past it
    assert marker_spans("Hold on second thought.", markers=["Hold on", "on second thought"]) == [(0, 22)]
    assert marker_spans("Let me check.", markers=["Let me", "me check"]) == [(0, 12)]


NUMBER_PIECES = ["18", "180", "1,800", "18.0", "018", "36/2", "36 / 2", "\\frac{36}{2}", "\\dfrac{-36}{2}", "-18",
                 "16-18", "x18", "1.18", "0", "0.5", ".5", "1/2", "2.25", "9/4", "١٨", "٣", " ", "\n\n", ".", ",", "$",
                 "=", " = ", "a", "(", ")", "7", "1,000", "1000", "0,018", "3", "-3", "\\frac{1}{3}", "2/6", "/",
                 "frac", "\n", " is ", "so ", " gives ", "The answer is ", "\\boxed{", "}", "eighteen", "half", "?",
                 " or ", " stands", " dollars", "there are ", "*", " + ", "Thus ", " x ", ": ",
                 "1,8000", "12,345,6789", "36 / 2", "+18", "\u221218", "18%", "\\$18", "$18", "1", "8", "000"]


def test_answer_scan_equals_checking_every_step():
    """The scan only skips steps that cannot reach the gold: the same steps as reading the
    conclusions of every step."""
    rng = random.Random(1)
    golds = ["18", "-18", "1,000", "0.5", "2.25", "0", "3", "-3", "\\frac{1}{3}", "7", "1000", "24", "16", "1", "12345",
             "1800", "8000"]
    checkers = [AnswerChecker(g) for g in golds] + [AnswerChecker("18", "She has 18 apples and 3 pears.")]
    for _ in range(1500):
        text = _random_text(rng, NUMBER_PIECES, 25).strip() or "x"
        steps = split_steps(text)
        for c in checkers:
            every = [i for i, (s, e) in enumerate(steps) if c.step_reaches(text, s, e)]
            assert c.correct_steps(text, steps, None) == every, (c.gold, text)
            assert c.correct_steps(text, steps, 1) == every[:1]


def test_count_tokens_lists_and_arrays(tok):
    for t, _ in _long_traces(3) + EDGE_CASES[1:3]:
        thinking = split_trace(t).thinking
        offs = tok.backend_tokenizer.encode(thinking, add_special_tokens=False).offsets
        spans = marker_spans(thinking)
        n = len(tokens.covered_token_starts(offs, spans))
        assert tokens.count_covered_tokens(offs, spans) == n
        assert tokens.count_covered_tokens(np.asarray(offs, dtype=np.int64).reshape(-1, 2), spans) == n
    assert tokens.count_covered_tokens(np.zeros((0, 2), dtype=np.int32), [(0, 3)]) == 0
    assert tokens.count_covered_tokens([(0, 2), (2, 2), (2, 5), (5, 9)], [(2, 3), (8, 12)]) == 2


def test_score_jsonl_in_batches(tok, tmp_path, monkeypatch):
    from mta.sbt import pipeline

    monkeypatch.setattr(pipeline, "SCORE_BATCH", 5)
    out = tmp_path / "s.jsonl"
    s = run_jsonl(SAMPLE_TRACES, out, "score", tok, progress=False)
    got = [json.loads(x) for x in out.read_text().splitlines()]
    skipped = [json.loads(x) for x in skipped_path(out).read_text().splitlines()]
    assert s.records == len(got) + len(skipped) == 34
    assert [x["line"] for x in skipped] == sorted(x["line"] for x in skipped)  # input order
    recs = _records()
    assert [x["id"] for x in got] == [i for i in recs if i in {x["id"] for x in got}]  # input order
    for x in got:
        r = recs[x["id"]]
        assert x == {"id": x["id"], **score_trace(r["trace"], r["gold"], tok, problem=r["problem"]).to_dict()}
    assert {x["reason"] for x in skipped} == {"no </think>", "no answer after </think>", "empty thinking",
                                              "malformed record", "malformed JSON"}
    assert s.tokens_before == sum(x["thinking_tokens"] for x in got)
    # interrupted after 7 records: the rest is scored on resume, nothing twice
    out.write_text("\n".join(out.read_text().splitlines()[:7]) + "\n")
    skipped_path(out).unlink()
    s2 = run_jsonl(SAMPLE_TRACES, out, "score", tok, progress=False)
    assert s2.resumed == 7 and [json.loads(x) for x in out.read_text().splitlines()] == got


# --- issue 14 items 2 and 8: bad records never stop a run; resume accounts for every line ----

def _good(n: int = 3) -> list[dict]:
    recs = _records()
    return [recs[f"gsm8k-{i}"] for i in range(n)]


def _accounting(out: Path) -> tuple[list[dict], list[dict]]:
    """Written and skipped records; every line must be valid UTF-8 JSON, one record a line
    even for str.splitlines() (which also breaks at U+2028, U+2029 and U+0085)."""
    written = [json.loads(x) for x in out.read_bytes().decode("utf-8").splitlines()] if out.exists() else []
    skipped = [json.loads(x) for x in skipped_path(out).read_bytes().decode("utf-8").splitlines()]
    return written, skipped


@pytest.mark.parametrize("mode", ["score", "sbt-e"])
def test_bad_records_are_skipped_and_the_run_goes_on(tok, tmp_path, mode):
    """Each of these stopped `mta sbt` for good (every rerun at the same line); in `score` the
    records pending in the same batch were lost with it."""
    g0, g1, g2 = _good()
    trace = json.dumps(g0["trace"])
    lines = [
        json.dumps(g0),
        # lone surrogate escapes: in a written field, inside the trace (tokenizer), in the id, in the gold
        '{"id": "sur-problem", "problem": "x\\ud800y", "gold": "18", "trace": %s}' % trace,
        '{"id": "sur-trace", "problem": "p", "gold": "18", "trace": %s}' % trace.replace("<think>", "<think>\\udc80"),
        '{"id": "sur-\\udfff", "problem": "p", "gold": "18", "trace": %s}' % trace,
        '{"id": "sur-gold", "problem": "p", "gold": "1\\ud83d8", "trace": %s}' % trace,
        "[" * 100_000 + "]" * 100_000,                                   # deeper than the parser's recursion
        '{"id": "deep-gold", "problem": "p", "gold": %s, "trace": %s}' % ("[" * 500 + "]" * 500, trace),
        '{"id": {"a": [1, 2]}, "problem": "p", "gold": "18", "trace": %s}' % trace,  # id not a scalar
        b'{"id": "bad-utf8", "problem": "\xff\xfe", "gold": "18"}'.decode("latin-1"),
        json.dumps(g1),
        json.dumps(g2),
        json.dumps({**g0, "id": "breaks", "problem": "a\u2028b\x85c\u2029d"}),  # str.splitlines() breaks
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes("\n".join(lines).encode("latin-1", "surrogateescape") + b"\n")
    out = tmp_path / "out.jsonl"
    s = run_jsonl(inp, out, mode, tok, progress=False)
    written, skipped = _accounting(out)
    assert s.records == len(lines) == len(written) + len(skipped)
    assert [w["id"] for w in written] == ["gsm8k-0"] + (["sur-problem"] if mode == "score" else []) + \
        ["gsm8k-1", "gsm8k-2", "breaks"]
    if mode != "score":
        assert written[-1]["messages"][0]["content"] == "a\u2028b\x85c\u2029d"
    by_line = {x["line"]: x["reason"] for x in skipped}
    assert by_line[6] == "malformed JSON" and by_line[9] == "malformed JSON"
    assert by_line[3] == by_line[4] == by_line[5] == "invalid Unicode"
    # score never reads the problem; build writes it
    assert by_line.get(2) == (None if mode == "score" else "invalid Unicode")
    assert by_line[7] == "no gold answer" and by_line[8] == "malformed record"
    assert {x["id"] for x in skipped if x["line"] == 4} == {"sur-\udfff"}  # the id survives, escaped
    assert sorted(by_line) == [n for n in range(2, 10) if n != 2 or mode != "score"]
    # a rerun has nothing left to do
    s2 = run_jsonl(inp, out, mode, tok, progress=False)
    assert s2.resumed == len(lines) and s2.kept == 0 and not s2.skipped


def test_a_failing_score_batch_loses_no_pending_record(tok, tmp_path, monkeypatch):
    """An error that is not a TraceError, raised for the whole batch by one record, costs only
    that record: the batch is rescored record by record."""
    from mta.sbt import pipeline

    real = pipeline.score_traces

    def fragile(traces, golds, *args, **kwargs):
        if any("POISON" in t for t in traces if isinstance(t, str)):
            raise RuntimeError("tokenizer crashed")
        return real(traces, golds, *args, **kwargs)

    monkeypatch.setattr(pipeline, "score_traces", fragile)
    monkeypatch.setattr(pipeline, "SCORE_BATCH", 4)
    g = _good(6)
    recs = g[:2] + [{**g[2], "id": "poison", "trace": g[2]["trace"] + " POISON"}] + g[3:]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "s.jsonl"
    run_jsonl(inp, out, "score", tok, progress=False)
    written, skipped = _accounting(out)
    assert [w["id"] for w in written] == [r["id"] for r in recs if r["id"] != "poison"]
    assert [(x["id"], x["reason"]) for x in skipped] == [("poison", "error: RuntimeError")]
    assert "tokenizer crashed" in skipped[0]["detail"]


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no per-record handler catches it."""


@pytest.mark.parametrize("mode", ["score", "sbt-d"])
def test_resume_after_a_kill_accounts_for_duplicate_ids(tok, tmp_path, monkeypatch, mode):
    """An uninterrupted run lists a second copy of an id as a duplicate; a run killed after the
    first copy and rerun must give the same files, byte for byte (before: the second copy was
    counted as already done and appeared in neither file)."""
    from mta.sbt import pipeline

    g = _good(5)
    recs = [g[0], g[1], {**g[2], "id": g[1]["id"]}, {"id": "no-trace", "gold": "1"}, g[3],
            {"id": "no-trace", "gold": "2"}, g[4], {**g[0], "trace": "x"}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"id": "line:10"}\nnot json\n')
    full = tmp_path / "full.jsonl"
    run_jsonl(inp, full, mode, tok, progress=False)
    written, skipped = _accounting(full)
    assert len(written) + len(skipped) == 10
    assert [x["reason"] for x in skipped if x["id"] == "gsm8k-1"] == ["duplicate id"]
    assert [x["reason"] for x in skipped if x["id"] == "no-trace"] == ["malformed record", "duplicate id"]
    # a generated key (line 10, not JSON) meets an id that looks like one (line 9): one record each
    assert [x["reason"] for x in skipped if x["id"] == "line:10"] == ["malformed record", "malformed JSON"]
    monkeypatch.setattr(pipeline, "SCORE_BATCH", 1)
    target = "_score_batch" if mode == "score" else "_one"
    real = getattr(pipeline, target)
    for kill_at in range(1, 7):  # the kill lands before the kill_at-th scored/built record
        calls = []

        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == kill_at:
                raise _Killed
            return real(*args, **kwargs)

        out = tmp_path / f"k{kill_at}.jsonl"
        monkeypatch.setattr(pipeline, target, dying)
        with pytest.raises(_Killed):
            run_jsonl(inp, out, mode, tok, progress=False)
        monkeypatch.setattr(pipeline, target, real)
        s = run_jsonl(inp, out, mode, tok, progress=False)
        assert s.resumed + s.kept + sum(s.skipped.values()) == 10
        assert out.read_bytes() == full.read_bytes(), kill_at
        assert skipped_path(out).read_bytes() == skipped_path(full).read_bytes(), kill_at


def test_pipeline_paths_fail_before_anything_is_created(tok, tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(_good(1)[0]) + "\n")
    with pytest.raises(ValueError, match="OUT: .* is a directory"):
        run_jsonl(inp, tmp_path, "score", tok, progress=False)
    with pytest.raises(ValueError, match="IN: .* is a directory"):
        run_jsonl(tmp_path, tmp_path / "o.jsonl", "score", tok, progress=False)
    (tmp_path / "o.skipped.jsonl").mkdir()
    with pytest.raises(ValueError, match="skipped file"):
        run_jsonl(inp, tmp_path / "o.jsonl", "sbt-e", tok, progress=False)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("mode", ["score", "sbt-d"])
def test_backend_tokenizer_gives_the_same_files(tok, tmp_path, mode):
    """The CLI reads tokenizer.json with `tokenizers` alone (no transformers import): the same
    output as the transformers tokenizer."""
    tok.save_pretrained(tmp_path / "tok")
    backend = load_tokenizer(str(tmp_path / "tok"), backend_only=True)
    assert type(backend).__module__.startswith("tokenizers")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run_jsonl(SAMPLE_TRACES, a, mode, tok, progress=False)
    run_jsonl(SAMPLE_TRACES, b, mode, backend, progress=False)
    assert a.read_bytes() == b.read_bytes() and len(a.read_bytes()) > 1000
    assert skipped_path(a).read_bytes() == skipped_path(b).read_bytes()
