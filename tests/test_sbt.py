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
    ms = find_markers("Hmm, wait, let me check. But maybe not.\n\nMaybe I should consider x.")
    assert [m.marker for m in ms] == ["Hmm", "Wait", "Let me check", "But", "Maybe I should consider"]
    # mid-sentence words only count with anchor="anywhere"
    assert find_markers("it might be so, but no") == []
    assert [m.marker for m in find_markers("it might be so, but no", anchor="anywhere")] == ["Might", "But"]
    # nested occurrences are merged: covered once
    text = "Let me just double-check."
    assert len(find_markers(text, anchor="anywhere")) == 2
    assert marker_spans(text, anchor="anywhere") == [(0, 24)]
    assert [m.marker for m in find_markers("Hold   on. Going back")] == ["Hold on", "Going back"]
    with pytest.raises(ValueError, match="anchor"):
        find_markers("x", anchor="nowhere")


def test_answer_checker():
    c = AnswerChecker("18")
    assert c.contains_answer("so 9 * 2 = $18.") and c.contains_answer("that is 18.00 dollars")
    assert not c.contains_answer("16 - 3 - 4 = 9") and not c.contains_answer("180 or 1,800")
    h = AnswerChecker("\\frac{1}{2}")
    assert h.contains_answer("That gives 1/2.") and h.contains_answer("= 0.5") and h.contains_answer("\\frac{2}{4}")
    assert AnswerChecker("1,000").contains_answer("a total of 1000 apples")
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
    ex = build_example(r["trace"], r["gold"], g["method"], tok)
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
