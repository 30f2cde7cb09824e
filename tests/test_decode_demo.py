"""The decode demo (`mta demo`): SmolLM2 through mta.generate with per-prompt parameters."""

import pytest

from mta import decode_demo

pytestmark = pytest.mark.smollm2


def test_demo_runs_and_its_greedy_row_equals_model_generate(capsys):
    result = decode_demo.run_demo(max_new_tokens=12, seed=0, verify=True, progress=False)
    printed = capsys.readouterr().out
    assert len(result.token_ids) == len(decode_demo.DEMO_PROMPTS)
    assert all(0 < len(t) <= 12 for t in result.token_ids)
    assert "greedy row 0 vs model.generate(do_sample=False): OK" in printed
    assert "MISMATCH" not in printed
    assert all(lp == 0.0 for lp in result.logprobs[0])  # greedy: probability 1 under its distribution
    assert all(lp <= 0.0 for row in result.logprobs[1:] for lp in row)


def test_demo_is_reproducible_per_seed():
    first = decode_demo.run_demo(max_new_tokens=8, seed=5, verify=False, progress=False)
    again = decode_demo.run_demo(max_new_tokens=8, seed=5, verify=False, progress=False)
    assert first.token_ids == again.token_ids
