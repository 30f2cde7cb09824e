"""``mta eval``: the resumable harness (records, resume after a crash, manifest checks),
technique specs and the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mta.data import Problem, arithmetic_problems
from mta.eval import make_technique, parse_spec, run_eval
from mta.eval.records import RecordLog
from mta.inference.techniques import Decoding, ItemResult, SampleRecord

ROOT = Path(__file__).resolve().parents[1]


class Scripted:
    """A technique answering from a table, counting the problems it was asked."""

    def __init__(self, name="scripted", answers=None):
        self.name = name
        self.answers = answers or {}
        self.asked = []

    def config(self):
        return {"technique": "scripted", "answers": self.answers}

    def run(self, model, tokenizer, problems, *, seed, progress):
        self.asked += [p.id for p in problems]
        out = []
        for p in problems:
            answer = self.answers.get(p.id, p.answer)
            out.append(ItemResult(p.id, answer, 3, 0.01, [SampleRecord(f"= {answer}", answer, 3, -1.0, "eos")]))
        return out


PROBLEMS = arithmetic_problems(7, seed=1)


def _keys(path):
    return [(r["model"], r["technique"], r["item"]) for r in map(json.loads, Path(path).read_text().splitlines())]


def test_records_once_each_and_resume_skips_done_items(tmp_path):
    wrong = {PROBLEMS[1].id: "12345", PROBLEMS[4].id: None}
    a, b = Scripted("a", wrong), Scripted("b")
    report = run_eval(PROBLEMS, [a, b], tmp_path, models={"m": (None, None)}, batch_size=3, progress=False)
    assert report.row("a").correct == 5 and report.row("a").no_answer == 1 and report.row("b").accuracy == 1.0
    assert report.row("a").mean_tokens == 3 and report.row("a").items == 7
    keys = _keys(tmp_path / "records.jsonl")
    assert len(keys) == len(set(keys)) == 14
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 14  # one line per problem and sample
    # run again: nothing left to do, nothing asked, nothing duplicated
    a2, b2 = Scripted("a", wrong), Scripted("b")
    report2 = run_eval(PROBLEMS, [a2, b2], tmp_path, models={"m": (None, None)}, batch_size=3, progress=False)
    assert a2.asked == b2.asked == [] and report2.resumed_records == 14
    assert _keys(tmp_path / "records.jsonl") == keys
    # a new technique in the same directory runs alone; a loader is called only when there is work
    loads = []
    c = Scripted("c")
    run_eval(PROBLEMS, [a2, c], tmp_path, models={"m": lambda: loads.append(1) or (None, None)}, batch_size=3,
             progress=False)
    assert a2.asked == [] and c.asked == [p.id for p in PROBLEMS] and loads == [1]
    assert (tmp_path / "summary.md").read_text().count("| c |") == 1
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 0


def test_torn_last_line_is_dropped_and_that_item_reruns(tmp_path, capsys):
    a = Scripted("a")
    run_eval(PROBLEMS[:4], [a], tmp_path, models={"m": (None, None)}, batch_size=2, progress=False)
    path = tmp_path / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:25])  # the process died inside the last write
    a2 = Scripted("a")
    run_eval(PROBLEMS[:4], [a2], tmp_path, models={"m": (None, None)}, batch_size=2, progress=False)
    assert "partial last line" in capsys.readouterr().err
    assert a2.asked == [PROBLEMS[3].id]
    assert path.read_text().splitlines(keepends=True)[:3] == lines[:3]
    assert len(_keys(path)) == 4


def test_corrupt_or_duplicate_lines_are_errors_not_dropped(tmp_path):
    run_eval(PROBLEMS[:3], [Scripted("a")], tmp_path, models={"m": (None, None)}, progress=False)
    path = tmp_path / "records.jsonl"
    good = path.read_text()
    path.write_text("not json\n" + good)
    with pytest.raises(ValueError, match="records.jsonl:1"):
        RecordLog(path)
    first = good.splitlines(keepends=True)[0]
    path.write_text(good + first)
    with pytest.raises(ValueError, match="second record"):
        RecordLog(path)


def test_manifest_mismatch_and_bad_inputs(tmp_path):
    run_eval(PROBLEMS[:3], [Scripted("a")], tmp_path, models={"m": (None, None)}, progress=False)
    with pytest.raises(ValueError, match="other problems"):
        run_eval(PROBLEMS[:4], [Scripted("a")], tmp_path, models={"m": (None, None)}, progress=False)
    with pytest.raises(ValueError, match="seed"):
        run_eval(PROBLEMS[:3], [Scripted("a")], tmp_path, models={"m": (None, None)}, seed=5, progress=False)
    with pytest.raises(ValueError, match="another config"):
        run_eval(PROBLEMS[:3], [Scripted("a", {"x": "1"})], tmp_path, models={"m": (None, None)}, progress=False)
    report = run_eval(PROBLEMS[:4], [Scripted("a")], tmp_path, models={"m": (None, None)}, progress=False,
                      overwrite=True)
    assert report.row("a").items == 4 and report.resumed_records == 0
    dup = [Problem("x", "q", "1", "s"), Problem("x", "q2", "2", "s")]
    with pytest.raises(ValueError, match="unique"):
        run_eval(dup, [Scripted()], tmp_path / "d", models={"m": (None, None)})
    with pytest.raises(ValueError, match="technique names"):
        run_eval(PROBLEMS, [Scripted("a"), Scripted("a")], tmp_path / "e", models={"m": (None, None)})
    with pytest.raises(TypeError, match="Technique"):
        run_eval(PROBLEMS, [object()], tmp_path / "f", models={"m": (None, None)})
    with pytest.raises(ValueError, match="batch_size"):
        run_eval(PROBLEMS, [Scripted()], tmp_path / "g", models={"m": (None, None)}, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        run_eval([], [Scripted()], tmp_path / "h", models={"m": (None, None)})


def test_technique_specs():
    assert parse_spec("sc:n=8,vote=weighted,top_p=0.9") == ("sc", {"n": 8, "vote": "weighted", "top_p": 0.9})
    t = make_technique("sc:n=4,vote=weighted,temperature=1.0", Decoding(max_new_tokens=32))
    assert (t.n, t.vote, t.decoding.temperature, t.decoding.max_new_tokens) == (4, "weighted", 1.0, 32)
    assert t.name == "sc:n=4,vote=weighted,temperature=1.0"
    assert make_technique("greedy").decoding.temperature == 0.0
    assert make_technique("bon:selector=oracle").selector.name == "oracle"
    assert make_technique("braking:max_thinking_tokens=32").braking.max_thinking_tokens == 32
    assert make_technique("edt:theta=0.3").schedule.theta == 0.3
    for spec in ("edt", "bon:selector=oracle", "braking", "sc:n=4,vote=weighted"):  # resume compares configs
        assert json.dumps(make_technique(spec).config()) == json.dumps(make_technique(spec).config())
    with pytest.raises(ValueError, match="unknown technique"):
        make_technique("beam")
    with pytest.raises(ValueError, match="unknown option"):
        make_technique("sc:m=3")
    with pytest.raises(ValueError, match="key=value"):
        make_technique("sc:8")
    with pytest.raises(ValueError, match="n must be"):
        make_technique("sc:n=0")
    with pytest.raises(ValueError, match="selector"):
        make_technique("bon:selector=longest")
    with pytest.raises(ValueError, match="temperature"):
        make_technique("sample:temperature=-1")
    with pytest.raises(ValueError, match="braking"):
        make_technique("braking:budget=3")
    with pytest.raises(ValueError, match="question"):
        Decoding(prompt="no placeholder")


def _cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'python'}", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "mta.cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_cli_help_and_bad_arguments(capsys, tmp_path):
    from mta.cli import main

    for command, expected in (("eval", "sc:n=8"), ("sweep", "--temperatures")):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and expected in capsys.readouterr().out
    assert main(["eval", "--model", "tiny", "-t", "nonsense", "--out", str(tmp_path)]) == 2
    assert "unknown technique" in capsys.readouterr().err
    assert main(["eval", "--model", "no-such-model", "--out", str(tmp_path)]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.smollm2  # the tiny model borrows SmolLM2's tokenizer
def test_resume_after_a_killed_run_matches_an_uninterrupted_one(tmp_path):
    """SIGKILL ``mta eval`` mid-run, tear its last line, start it again: every item once,
    the lines written before the crash untouched, and the same records as a run never killed."""
    run_dir = tmp_path / "run"
    args = ["eval", "--model", "tiny", "--data", "arithmetic", "--limit", "10", "--batch-size", "2",
            "--max-new-tokens", "16", "-t", "greedy", "-t", "sc:n=2", "--out", str(run_dir), "--no-progress"]
    proc = _cli(args)
    records = run_dir / "records.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and records.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records.read_text()
    assert 4 <= before.count("\n") < 20
    with open(records, "a") as f:
        f.write(before.splitlines()[0][:40])  # torn last line
    resumed = _cli(args)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resumed: {before.count(chr(10))} records" in out
    after = records.read_text()
    assert after.startswith(before)  # nothing written before the crash was redone or rewritten
    keys = _keys(records)
    assert len(keys) == len(set(keys)) == 20

    from mta.eval.registry import load_model

    fresh = tmp_path / "fresh"
    techniques = [make_technique(s, Decoding(max_new_tokens=16)) for s in ("greedy", "sc:n=2")]
    run_eval(arithmetic_problems(10, seed=0), techniques, fresh, models={"tiny": load_model("tiny")},
             dataset="arithmetic", batch_size=2, progress=False)

    def comparable(path):
        rows = {}
        for r in map(json.loads, Path(path).read_text().splitlines()):
            rows[(r["technique"], r["item"])] = (r["answer"], r["tokens"], [s["text"] for s in r["samples"]])
        return rows

    assert comparable(records) == comparable(fresh / "records.jsonl")


@pytest.mark.smollm2
def test_methods_demo_table_has_every_technique(tmp_path, capsys, monkeypatch):
    """The table `mta demo` ends with: one row per DEMO_TECHNIQUES spec, WSD included and its
    base said plainly (SmolLM2 as the base here: Gemma is opt-in), on the real model."""
    import mta.models
    from mta.eval.demo import DEMO_TECHNIQUES, run_methods_demo

    monkeypatch.setattr(mta.models, "gemma3_installed", lambda: False)
    report = run_methods_demo(limit=2, max_new_tokens=8, out_dir=tmp_path, progress=False)
    assert [r.technique for r in report.rows] == DEMO_TECHNIQUES
    assert all(r.items == 2 and r.mean_tokens > 0 and r.time_s > 0 for r in report.rows)
    assert report.row("sc:n=8").samples_per_item == 8 and report.row("greedy").samples_per_item == 1
    printed = capsys.readouterr().out
    assert "| wsd:temperature=0 |" in printed and "SmolLM2-135M-Instruct as a plain-text base" in printed
    wsd = [r for r in map(json.loads, (tmp_path / "records.jsonl").read_text().splitlines())
           if r["technique"] == "wsd:temperature=0"]
    greedy = {r["item"]: r for r in map(json.loads, (tmp_path / "records.jsonl").read_text().splitlines())
              if r["technique"] == "greedy"}
    for r in wsd:  # the draft is the greedy answer (same prompt, greedy, same budget)
        assert r["extra"]["draft_tokens"] == greedy[r["item"]]["tokens"]
        assert r["tokens"] == r["extra"]["draft_tokens"] + r["extra"]["base_tokens"]
