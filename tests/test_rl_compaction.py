"""generate(compact_every=k): finished rows dropped from the batch, the result unchanged."""

import pytest
import torch

from mta.generation.engine import generate
from mta.mixing import Mixing
from mta.models import tiny_random_model
from mta_kernels.braking import BrakingConfig, MarkerTables
from mta_kernels.integrations.transformers import BrakingLogitsProcessor
from mta_kernels.mixing.recipes import contrastive_decoding

V = 1000
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [20, 21], [30, 31, 32, 33]]
# Many EOS ids: under sampling a row ends with probability ~4% a step, so lengths are
# long-tailed and rows finish at many different steps (the case compaction is for).
SAMPLED_EOS = list(range(2, 40))


@pytest.fixture(scope="module")
def llama():
    return tiny_random_model("llama", vocab_size=V, seed=0)


class CharTokenizer:
    """Token id -> one letter: enough for stop strings on a tiny model."""

    pad_token_id = 1
    eos_token_id = 1

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(ord("a") + i % 26) for i in ids)


def both(model, tokenizer=None, every=3, **kw):
    kw = dict(n=4, max_new_tokens=40, progress=False, return_entropy=True) | kw
    return generate(model, tokenizer, PROMPTS, **kw), generate(model, tokenizer, PROMPTS, compact_every=every, **kw)


def assert_same(plain, compacted):
    assert compacted.token_ids == plain.token_ids
    assert compacted.finish_reasons == plain.finish_reasons
    assert compacted.texts == plain.texts
    # The model runs on fewer rows: its batched matmuls may round differently in the last bit.
    for name in ("logprobs", "entropies"):
        for a, b in zip(getattr(plain, name), getattr(compacted, name)):
            torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_seeded_sampling_gives_the_same_samples(llama, cache):
    plain, compacted = both(llama, temperature=1.0, seed=3, eos_token_id=SAMPLED_EOS, cache=cache)
    lengths = [len(t) for t in plain.token_ids]
    assert min(lengths) < 10 and max(lengths) == 40  # rows did finish early, others ran to the cap
    assert_same(plain, compacted)


def test_per_row_parameters_and_greedy_rows(llama):
    plain, compacted = both(llama, every=2, temperature=[1.0, 0.7, 0.0], top_p=[0.9, 1.0, 1.0], top_k=[0, 50, 0],
                            seed=4, eos_token_id=SAMPLED_EOS)
    assert len(set(map(len, plain.token_ids))) > 3
    assert_same(plain, compacted)


def test_a_per_step_schedule_gives_the_same_samples(llama):
    """ScheduledSampler drops rows as PlainSampler does: the schedule's per-row state and the
    uniforms follow the kept rows, so seeded samples do not depend on compaction."""
    from mta.inference.schedules import EntropyAdaptiveTemperature

    plain, compacted = both(llama, every=2, temperature=1.0, seed=7, eos_token_id=SAMPLED_EOS,
                            schedule=EntropyAdaptiveTemperature(theta=0.5))
    assert len(set(map(len, plain.token_ids))) > 3
    assert_same(plain, compacted)
    for name, values in plain.extras["schedule"].items():
        kept = compacted.extras["schedule"][name]
        done = torch.tensor([[s < len(t) for t in plain.token_ids] for s in range(values.shape[0])])
        torch.testing.assert_close(kept[done], values[done])


def test_greedy_gives_the_same_tokens(llama):
    plain, compacted = both(llama, every=1, temperature=0.0, eos_token_id=list(range(100, 400)))
    assert_same(plain, compacted)


def test_stop_strings_are_found_in_rows_dropped_later(llama):
    tok = CharTokenizer()
    plain, compacted = both(llama, tok, every=2, temperature=1.0, seed=5, eos_token_id=SAMPLED_EOS, stop=["q", "zz"],
                            stop_check_interval=3)
    assert "stop" in plain.finish_reasons and "eos" in plain.finish_reasons
    assert_same(plain, compacted)


def test_all_rows_finishing_ends_the_loop(llama):
    plain, compacted = both(llama, every=1, temperature=1.0, seed=6, eos_token_id=list(range(2, 600)))
    assert max(map(len, plain.token_ids)) < 40
    assert compacted.steps <= plain.steps
    assert_same(plain, compacted)


def test_refused_where_rows_cannot_be_dropped(llama):
    with pytest.raises(ValueError, match="compact_every must be"):
        generate(llama, None, PROMPTS, compact_every=-1, progress=False)
    with pytest.raises(TypeError, match="compact_every"):
        generate(llama, None, PROMPTS, compact_every=1.5, progress=False)
    tables = MarkerTables.from_token_ids([[40]], step_token_ids=[50], end_think_id=900, brake_ids=[900], vocab_size=V)
    with pytest.raises(ValueError, match="braking"):
        generate(llama, None, PROMPTS, compact_every=2, progress=False,
                 braking=BrakingLogitsProcessor(tables, BrakingConfig(max_thinking_tokens=3)))
    amateur = tiny_random_model("llama", vocab_size=V, seed=1)
    with pytest.raises(ValueError, match="cannot drop rows"):
        generate(llama, None, PROMPTS, compact_every=2, progress=False,
                 mixing=Mixing([amateur], contrastive_decoding(0.5)))
    with pytest.raises(ValueError, match="compile=False"):
        generate(llama, None, PROMPTS, compact_every=2, progress=False, compile=True, cache="static")
