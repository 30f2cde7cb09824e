"""Opt-in (``pytest -m training tests/test_training_smollm2.py``): the training recipes end to
end on the real SmolLM2-135M-Instruct, scaled down — the SBT loop (traces, score, SBT-E,
fine-tune, before / after), TFPI stages and the ThinkFree-vs-thinking eval."""

from __future__ import annotations

import argparse
import json

import pytest

pytestmark = [pytest.mark.training, pytest.mark.smollm2]


@pytest.fixture(autouse=True)
def _opt_in(request):
    if "training" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: pytest -m training tests/test_training_smollm2.py")


def test_sbt_loop_runs_end_to_end(tmp_path):
    from mta.sbt.loop import add_arguments, run_loop

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--train", "6", "--heldout", "4", "--samples", "2", "--trace-tokens", "48",
                              "--eval-tokens", "48", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    summary = run_loop(args)
    assert summary["traces"] == 12
    assert summary["before"]["mean_tokens"] > 0
    if summary["sbt_e_records"]:
        assert summary["after"] is not None and (tmp_path / "sft" / "model" / "config.json").is_file()
    assert "| before |" in (tmp_path / "report.md").read_text()


def test_tfpi_stages_and_eval_on_smollm2(tmp_path):
    from mta.data import arithmetic_problems
    from mta.models import load_smollm2
    from mta.tfpi.evaluate import compare_modes
    from mta.tfpi.stages import load_tfpi_config, run_stages

    cfg = load_tfpi_config(None, {"model": "smollm2", "data": "arithmetic", "data_limit": 16, "prompts_per_step": 2,
                                  "group_size": 2, "micro_batch_size": 4, "lr": 2e-5, "run_dir": str(tmp_path),
                                  "progress": False},
                           stages=[{"max_new_tokens": 8, "steps": 1}, {"max_new_tokens": 16, "steps": 1}])
    rows = run_stages(cfg)
    assert [r["stage"] for r in rows] == [1, 2]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["stage_max_new_tokens"] == 16
    model, tok = load_smollm2()
    results = compare_modes(model, tok, arithmetic_problems(4, seed=1), max_new_tokens=24, progress=False)
    assert {r.mode for r in results} == {"thinking", "thinkfree"}
