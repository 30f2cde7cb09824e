"""tools/gpu_session.sh stays runnable: its dry run checks the logic, the paths, the GPU test
selection (collected, not run) and the output layout on a CPU machine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(command: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    env.pop("MTA_BACKEND", None)
    return subprocess.run(["bash", "tools/gpu_session.sh", command, "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_tests_command_dry_run(tmp_path):
    done = _dry_run("tests", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build.log", "env.log", "summary.md", "tests.log"]
    summary = (tmp_path / "summary.md").read_text()
    collected = {line.split(":")[0]: int(line.split(":")[1]) for line in summary.splitlines()
                 if line.startswith("tests/") and line.split(":")[1].strip().isdigit()}
    # every family's kernel tests and the GPU-only decode-step tests are in the selection
    for name in ("test_sampling_backends", "test_mixing_ops", "test_braking", "test_logprobs", "test_rl_ops",
                 "test_gpu_decode_step", "test_opcheck"):
        assert collected.get(f"tests/{name}.py", 0) > 0, name
    assert "== $OUT holds 4 files" in done.stdout


def test_bench_command_dry_run(tmp_path):
    done = _dry_run("bench", tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bench.log", "env.log", "plots.tar.gz", "results.json", "results.md"]
    for family in ("sampling", "mixing", "braking", "logprobs", "rl", "generate"):
        assert f"== {family} (at most" in done.stdout


@pytest.mark.parametrize("args", [[], ["everything"], ["tests", "--fast"]])
def test_bad_arguments_print_usage(args):
    done = subprocess.run(["bash", "tools/gpu_session.sh", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage:" in done.stderr
