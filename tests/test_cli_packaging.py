"""Issue 14 items 13 and 14: the wheel declares its extras and a command missing one names it
before it creates anything; progress bars turn themselves off in logs and on request; the
`mta` sub-commands import only what they run."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mta import extras, progress
from mta.cli import main
from mta.sbt import SAMPLE_TRACES

ROOT = Path(__file__).resolve().parents[1]


def _child_env(**extra) -> dict:
    """This checkout first on the path (an installed copy of the packages must not win)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "python")]))
    env.pop("MTA_PROGRESS", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    from mta.sbt import load_tokenizer

    path = tmp_path_factory.mktemp("tok")
    load_tokenizer().save_pretrained(path)
    return path


def test_setup_declares_every_extra(tmp_path):
    """The wheel's metadata (egg_info, what a wheel build writes) lists each extra of mta.extras."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True, env=_child_env(MTA_SKIP_CUDA_BUILD="1"))
    requires = next(tmp_path.glob("*.egg-info")).joinpath("requires.txt").read_text()
    sections = dict(re.findall(r"\[(\w+)\]\n((?:[^\[\n][^\n]*\n?)*)", requires))
    want = extras.requirements()
    assert set(sections) == set(want) >= {"transformers", "math", "triton", "ray", "all"}
    for name, reqs in want.items():
        assert sorted(_normalised(sections[name].split())) == sorted(_normalised(reqs)), name


def _normalised(reqs):
    """setuptools writes ``a<6,>=5`` for ``a>=5,<6``: compare the sets of clauses."""
    out = []
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)(.*)", r.replace(" ", ""))
        clauses = ",".join(sorted(c for c in m.group(2).split(",") if c))
        out.append(m.group(1) + clauses)
    return out


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # `import math_verify` now fails
    with pytest.raises(extras.MissingExtraError, match=re.escape("pip install 'mta_kernels[math]'")):
        extras.require("mta sbt score", "math")
    extras.require("mta sbt score", "transformers", modules=("tokenizers",))
    with pytest.raises(ValueError, match="extras: unknown extra 'nope'"):
        extras.require("x", "nope")


@pytest.mark.parametrize("missing, extra, argv", [
    ("math_verify", "math", ["sbt", "score", "IN", "--out", "OUT"]),
    ("tokenizers", "transformers", ["sbt", "build", "IN", "OUT", "--method", "sbt-e"]),
    ("math_verify", "math", ["sbt", "build", "IN", "OUT", "--method", "sbt-d"]),
])
def test_sbt_command_without_an_extra_says_which_and_creates_nothing(tmp_path, capsys, monkeypatch,
                                                                      missing, extra, argv):
    out = tmp_path / "sub" / "out.jsonl"
    argv = [str(SAMPLE_TRACES) if a == "IN" else str(out) if a == "OUT" else a for a in argv]
    monkeypatch.setitem(sys.modules, missing, None)
    assert main(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"pip install 'mta_kernels[{extra}]'" in err and missing in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sub").exists()


def test_run_jsonl_checks_math_verify_before_opening_outputs(tmp_path, monkeypatch):
    from mta.sbt import run_jsonl

    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(extras.MissingExtraError, match="math"):
        run_jsonl(SAMPLE_TRACES, tmp_path / "o.jsonl", "sbt-e", tokenizer=None, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_demo_without_transformers_says_which_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert main(["demo", "--skip-bench", "--skip-braking"]) == 2
    assert "pip install 'mta_kernels[transformers]'" in capsys.readouterr().err
    assert main(["sbt", "demo", "--max-new-tokens", "4"]) == 2
    assert "pip install 'mta_kernels[transformers]'" in capsys.readouterr().err


def test_sbt_cli_path_errors_are_one_line(tmp_path, capsys):
    assert main(["sbt", "build", str(SAMPLE_TRACES), str(tmp_path), "--method", "sbt-e", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and len(err.strip().splitlines()) == 1


def test_lazy_sub_commands_still_list_their_options(capsys):
    for argv, option in ((["demo", "--help"], "--max-new-tokens"), (["sbt", "demo", "--help"], "--budget"),
                         (["sbt", "build", "--help"], "--masked-steps")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0 and option in capsys.readouterr().out


# --- progress ---------------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_enabled_rules(monkeypatch):
    monkeypatch.delenv("MTA_PROGRESS", raising=False)
    assert progress.progress_enabled(True, _Terminal())
    assert progress.progress_enabled(None, _Terminal())
    assert not progress.progress_enabled(True, io.StringIO())   # a file or a pipe: a log
    assert not progress.progress_enabled(False, _Terminal())    # --no-progress wins
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("MTA_PROGRESS", off)
        assert not progress.progress_enabled(True, _Terminal())
    for on in ("1", "true", "On", "yes"):
        monkeypatch.setenv("MTA_PROGRESS", on)
        assert progress.progress_enabled(True, io.StringIO())
        assert not progress.progress_enabled(False, io.StringIO())
    monkeypatch.setenv("MTA_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="MTA_PROGRESS"):
        progress.progress_enabled(True)


def test_progress_bar_is_off_in_a_log_and_still_counts(monkeypatch):
    monkeypatch.delenv("MTA_PROGRESS", raising=False)
    log = io.StringIO()
    bar = progress.progress_bar(range(3), file=log, desc="x")
    assert bar.disable and list(bar) == [0, 1, 2]
    bar.update(1)
    bar.close()
    assert log.getvalue() == ""
    monkeypatch.setenv("MTA_PROGRESS", "1")
    with progress.progress_bar(total=2, file=log, desc="forced") as bar:
        bar.update(2)
    assert "forced" in log.getvalue()


def test_every_tqdm_goes_through_the_helper():
    """`grep tqdm`: only mta/progress.py may import it (and docs/comments may mention it)."""
    offenders = []
    for root in (ROOT / "python", ROOT / "mta_kernels", ROOT / "benchmarks"):
        for path in root.rglob("*.py"):
            if path.name == "progress.py" and path.parent.name == "mta":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"^\s*(from tqdm|import tqdm)|\btqdm\(", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_sbt_cli_in_a_log_no_bar_no_torch(tmp_path, tokenizer_dir):
    """`mta sbt score` with stderr to a file: no progress bar unless MTA_PROGRESS=1; it never
    imports torch (the demos' options are built only when a demo runs)."""
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(SAMPLE_TRACES.read_text().splitlines(keepends=True)[:3]))
    code = ("import sys; from mta.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules}))")
    argv = ["sbt", "score", str(inp), "--out", str(tmp_path / "s.jsonl"), "--tokenizer", str(tokenizer_dir)]
    runs = {}
    for label, env in (("log", {}), ("forced", {"MTA_PROGRESS": "1"})):
        proc = subprocess.run([sys.executable, "-c", "import json; " + code, *argv, "--overwrite"],
                              env=_child_env(**env), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        runs[label] = (json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr)
    (log, log_err), (forced, forced_err) = runs["log"], runs["forced"]
    assert log == forced == {"rc": 0, "torch": False, "transformers": False}
    assert "sbt score" not in log_err and "\r" not in log_err
    assert "sbt score" in forced_err


def test_tokenizer_needing_transformers_says_which_extra(tmp_path, capsys, monkeypatch):
    """A tokenizer directory without tokenizer.json is read by transformers' AutoTokenizer."""
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer_config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    out = tmp_path / "o.jsonl"
    assert main(["sbt", "score", str(SAMPLE_TRACES), "--out", str(out), "--tokenizer", str(tmp_path / "tok")]) == 2
    assert "pip install 'mta_kernels[transformers]'" in capsys.readouterr().err
    assert not out.exists()
