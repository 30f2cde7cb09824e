"""Braking inside mta.generate and transformers' generate, and the SmolLM2 braking demo."""

import pytest
import torch
from transformers import LogitsProcessorList

from mta.generation.braking import braking_reports
from mta.generation.engine import generate
from mta.models import tiny_random_model
from mta_kernels.braking import BrakingConfig, BrakingController, BrakingState, MarkerTables, braking_step
from mta_kernels.integrations.transformers import BrakingLogitsProcessor, RowHistoryError

V = 1000
PROMPTS = [[5, 6, 7, 8, 9], [20, 21], [30, 31, 32]]
END, BRAKE = 900, [901, 902, 903, 900]


@pytest.fixture(scope="module")
def llama():
    return tiny_random_model("llama", vocab_size=V, seed=3)


def tables():
    return MarkerTables.from_token_ids([[40, 41], [42]], step_token_ids=[50, 51], end_think_id=END, brake_ids=BRAKE,
                                       vocab_size=V)


def test_budget_brake_forces_the_brake_text_then_decodes_on(llama):
    budget = torch.tensor([0, 5, 1000])
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=budget))
    out = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=24, eos_token_id=[], braking=proc,
                   progress=False)
    for b, k in enumerate([0, 5]):
        toks = out.token_ids[b]
        assert toks[k: k + len(BRAKE)] == BRAKE  # exactly `budget` thinking tokens, then the brake text
        rep = out.braking[b]
        assert rep.braked and rep.reason == "budget" and rep.ended_thinking
        # One meaning of thinking tokens: the model's own, as the processor's state counts
        # them; the forced brake text (</think> included) is counted apart.
        assert rep.thinking_tokens == k == int(proc.state.thinking_tokens[b])
        assert rep.forced_tokens == len(BRAKE)
        assert len(toks) == 24  # the answer is decoded after </think>
    assert not out.braking[2].braked and out.braking[2].reason == "none" and out.braking[2].forced_tokens == 0
    assert isinstance(proc.controller, BrakingController)  # built once for the generation
    plain = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=24, eos_token_id=[], progress=False)
    assert out.token_ids[2] == plain.token_ids[2]  # a row that never triggers is untouched
    assert out.braking[2].thinking_tokens == (plain.token_ids[2].index(END) if END in plain.token_ids[2] else 24)


def test_think_free_rows_pass_through_and_n_samples_are_rows(llama):
    in_think = torch.tensor([False, False, True, True, False, False])  # B = 3 prompts * n = 2
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=2), in_think=in_think)
    out = generate(llama, None, PROMPTS, n=2, temperature=0.0, max_new_tokens=12, eos_token_id=[], braking=proc,
                   progress=False)
    plain = generate(llama, None, PROMPTS, n=2, temperature=0.0, max_new_tokens=12, eos_token_id=[], progress=False)
    for b in range(6):
        if in_think[b]:
            assert out.token_ids[b][2:6] == BRAKE and out.braking[b].braked
        else:
            assert out.token_ids[b] == plain.token_ids[b]
            assert not out.braking[b].thinks and out.braking[b].thinking_tokens == 0 and not out.braking[b].braked


def test_processor_equals_braking_step_inside_generate(llama):
    """Sampled decoding: the processor inside generate does what braking_step on the same stream does."""
    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([7, 3, 1000]), max_steps=2)
    proc = BrakingLogitsProcessor(tables(), cfg)
    out = generate(llama, None, PROMPTS, temperature=1.0, max_new_tokens=16, eos_token_id=[], braking=proc, seed=1,
                   progress=False)
    # Replay the generated tokens through braking_step: same final counters and decisions.
    state = BrakingState.new(3)
    t = tables()
    for step in range(16):
        last = None if step == 0 else torch.tensor([row[step - 1] for row in out.token_ids])
        forced = braking_step(torch.zeros(3, V), last, state, t, cfg)
        for b in range(3):
            if torch.isinf(forced[b]).any():
                assert out.token_ids[b][step] == int(forced[b].argmax())
    for a, b in zip(proc.state.tensors(), state.tensors()):
        assert torch.equal(a, b)


def test_finished_rows_consume_nothing(llama):
    # EOS = the first brake token: row 0 brakes at once and finishes on that token.
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=torch.tensor([0, 1000, 1000])))
    out = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=10, eos_token_id=[BRAKE[0]], braking=proc,
                   progress=False)
    assert out.token_ids[0] == [BRAKE[0]] and out.finish_reasons[0] == "eos"
    assert int(proc.state.thinking_tokens[0]) == 0  # the padding fed after EOS was not counted
    assert out.braking[0].thinking_tokens == 0 and out.braking[0].braked


def test_reused_processor_starts_over_on_a_new_generation(llama):
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=4))
    first = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=10, eos_token_id=[], braking=proc,
                     progress=False)
    second = generate(llama, None, PROMPTS, temperature=0.0, max_new_tokens=10, eos_token_id=[], braking=proc,
                      progress=False)
    assert first.token_ids == second.token_ids and first.braking == second.braking


def test_transformers_generate_reuse_is_detected_by_content():
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=2), eos_token_id=[])
    ids = torch.zeros(2, 3, dtype=torch.long)
    for _ in range(3):
        proc(ids, torch.zeros(2, V))
        ids = torch.cat([ids, torch.full((2, 1), 7)], 1)
    assert int(proc.state.thinking_tokens[0]) == 2
    proc(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, V))  # same batch size, a fresh prompt
    assert int(proc.state.thinking_tokens[0]) == 0 and not bool(proc.state.braking.any())
    proc(torch.cat([torch.zeros(2, 3, dtype=torch.long), torch.full((2, 1), 7)], 1), torch.zeros(2, V))
    assert int(proc.state.thinking_tokens[0]) == 1
    # A new prompt exactly one token wider than the last call, but another text: used to be
    # taken for the next step (the width grew by one); the content says it is a new generation.
    proc(torch.full((2, 5), 3, dtype=torch.long), torch.zeros(2, V))
    assert int(proc.state.thinking_tokens[0]) == 0
    # Rows of one prompt regrouped (beam search) or the same step twice: refused, state kept.
    proc(torch.cat([torch.full((2, 5), 3), torch.tensor([[8], [9]])], 1), torch.zeros(2, V))
    before = proc.state.clone()
    with pytest.raises(RowHistoryError, match=r"they were reordered.*num_beams > 1"):
        proc(torch.cat([torch.full((2, 5), 3), torch.tensor([[9, 1], [8, 1]])], 1), torch.zeros(2, V))
    with pytest.raises(RowHistoryError, match="rewound, or the same step came twice"):
        proc(torch.cat([torch.full((2, 5), 3), torch.tensor([[8], [9]])], 1), torch.zeros(2, V))
    assert all(torch.equal(a, b) for a, b in zip(proc.state.tensors(), before.tensors()))


def test_processor_needs_eos_ids_in_transformers_generate_beyond_one_row(llama):
    prompts = torch.tensor([[5, 6, 7], [30, 31, 32]])
    with pytest.raises(ValueError, match=r"needs eos_token_id.*padding must not count as thinking"):
        llama.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False, max_new_tokens=3,
                       logits_processor=LogitsProcessorList([BrakingLogitsProcessor(tables(), BrakingConfig())]))
    # One row is never padded: no EOS ids needed, same tokens as mta.generate.
    cfg = BrakingConfig(max_thinking_tokens=3)
    hf = llama.generate(prompts[:1], attention_mask=torch.ones_like(prompts[:1]), do_sample=False, max_new_tokens=8,
                        eos_token_id=None, pad_token_id=0,
                        logits_processor=LogitsProcessorList([BrakingLogitsProcessor(tables(), cfg)]))
    ours = generate(llama, None, prompts[:1].tolist(), temperature=0.0, max_new_tokens=8, eos_token_id=[],
                    braking=BrakingLogitsProcessor(tables(), cfg), progress=False)
    assert hf[:, 3:].tolist() == ours.token_ids and ours.token_ids[0][3:7] == BRAKE
    for bad, error in (("2", TypeError), ([-1], ValueError), ([True], ValueError)):
        with pytest.raises(error, match="eos_token_id"):
            BrakingLogitsProcessor(tables(), cfg, eos_token_id=bad)
    with pytest.raises(ValueError, match="pad_token_id"):
        BrakingLogitsProcessor(tables(), cfg, pad_token_id=-2)


def _early_eos(tokens: list[list[int]], row: int, lo: int = 6) -> tuple[int, int]:
    """(eos, i): a token first generated by ``row`` at position ``i >= lo`` and by no other row."""
    others = {t for b, toks in enumerate(tokens) if b != row for t in toks}
    for i in range(lo, len(tokens[row])):
        t = tokens[row][i]
        if t not in tokens[row][:i] and t not in others and t not in BRAKE:
            return t, i
    raise AssertionError("no token fit as an early EOS")


def test_finished_rows_padding_is_not_thinking_in_transformers_generate():
    """A row that ended after a few tokens used to count transformers' padding as thinking
    (40 thinking tokens and a budget brake for a row that wrote 8)."""
    llama = tiny_random_model("llama", vocab_size=V, seed=3, initializer_range=0.2)  # varied greedy text
    prompts = torch.tensor([[5, 6, 7, 8, 9], [20, 21, 22, 23, 24]])
    cfg = BrakingConfig(max_thinking_tokens=20)
    free = generate(llama, None, prompts.tolist(), temperature=0.0, max_new_tokens=40, eos_token_id=[],
                    braking=BrakingLogitsProcessor(tables(), cfg), progress=False)
    eos, i = _early_eos(free.token_ids, row=0)
    ours = generate(llama, None, prompts.tolist(), temperature=0.0, max_new_tokens=40, eos_token_id=eos,
                    braking=BrakingLogitsProcessor(tables(), cfg), progress=False)
    assert ours.token_ids[0] == free.token_ids[0][: i + 1] and len(ours.token_ids[1]) == 40
    proc = BrakingLogitsProcessor(tables(), cfg, eos_token_id=eos)
    hf = llama.generate(prompts, attention_mask=torch.ones_like(prompts), do_sample=False, max_new_tokens=40,
                        eos_token_id=eos, pad_token_id=0, logits_processor=LogitsProcessorList([proc]))[:, 5:].tolist()
    hf = [row[: row.index(eos) + 1] if eos in row else row for row in hf]
    assert hf == ours.token_ids
    assert int(proc.state.thinking_tokens[0]) == i and not bool(proc.state.braked[0])  # EOS and padding not counted
    assert not bool(proc.state.in_think[0])  # a finished row leaves the thinking
    assert bool(proc.state.braked[1]) and int(proc.state.thinking_tokens[1]) == 20
    # The reports read off transformers' output agree with mta.generate's.
    assert braking_reports(proc, hf, {eos}) == ours.braking
    assert ours.braking[0].thinking_tokens == i and not ours.braking[0].braked
    assert ours.braking[1].thinking_tokens == 20 and ours.braking[1].forced_tokens == len(BRAKE)


def test_pad_token_ends_a_row_in_transformers_generate():
    """Rows ended by a stopping criterion (e.g. stop strings) are fed pad_token_id."""
    pad = 11
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=4), eos_token_id=[], pad_token_id=pad)
    ids = torch.zeros(2, 2, dtype=torch.long)
    for row0 in [7, pad, pad, pad, pad]:
        proc(ids, torch.zeros(2, V))
        ids = torch.cat([ids, torch.tensor([[row0], [7]])], 1)
    proc(ids, torch.zeros(2, V))
    assert proc.state.thinking_tokens.tolist() == [1, 4] and proc.state.braked.tolist() == [False, True]


@pytest.mark.parametrize("mode", ["beam search", "beam sampling", "assisted decoding"])
def test_reordering_modes_raise_in_transformers_generate(llama, mode):
    """Beam search regroups rows every step and assisted decoding rewinds them: the per-row
    state would belong to other rows, so the processor refuses them."""
    prompts = torch.tensor([[5, 6, 7], [30, 31, 32]])
    kwargs = {"beam search": dict(num_beams=3), "beam sampling": dict(num_beams=2, do_sample=True),
              "assisted decoding": dict(assistant_model=tiny_random_model("llama", vocab_size=V, seed=9))}[mode]
    if mode == "assisted decoding":
        prompts = prompts[:1]  # transformers' assisted decoding takes one row
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=4), eos_token_id=[])
    with pytest.raises(RowHistoryError, match="which reorder or rewind rows, are not supported"):
        llama.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=12, pad_token_id=0,
                       eos_token_id=None, logits_processor=LogitsProcessorList([proc]), **kwargs)


def test_zero_new_tokens_and_bad_braking_argument(llama):
    proc = BrakingLogitsProcessor(tables(), BrakingConfig(max_thinking_tokens=1))
    out = generate(llama, None, PROMPTS, max_new_tokens=0, braking=proc, progress=False)
    assert [r.thinking_tokens for r in out.braking] == [0, 0, 0] and not any(r.braked for r in out.braking)
    with pytest.raises(TypeError, match="braking must be"):
        generate(llama, None, PROMPTS, max_new_tokens=2, braking=BrakingConfig(), progress=False)


@pytest.mark.smollm2
def test_smollm2_braking_demo(capsys):
    from mta.sbt.braking_demo import DEMO_QUESTIONS, run_demo

    rows = run_demo(max_new_tokens=96, cfg=BrakingConfig(max_thinking_tokens=16, max_steps=3), progress=False)
    text = capsys.readouterr().out
    assert "thinking saved" in text
    for row, (_, _, thinks) in zip(rows, DEMO_QUESTIONS):
        if not thinks:
            assert row.free_text == row.braked_text and row.braked_thinking == 0  # ThinkFree: untouched
        elif row.free_thinking > 16 + 20:  # long thinkers brake at the budget and save tokens
            assert row.braked and row.reason in ("budget", "steps")
            assert "</think>" in row.braked_text and row.braked_thinking < row.free_thinking
        # One meaning of thinking tokens in both runs: greedy braking never thinks longer
        # (the forced brake text, reported apart, used to make this negative).
        assert row.thinking_saved >= 0
        assert (row.braked_forced > 0) == row.braked
        if row.braked and row.reason == "budget":
            assert row.braked_thinking == 16
    assert any(r.braked for r in rows)
    assert "+ forced" in text


def test_processor_works_inside_transformers_generate(llama):
    """transformers' LogitsProcessorList accepts the processor (a two-argument __call__) and
    greedy decoding brakes exactly as inside mta.generate."""
    from transformers import LogitsProcessorList

    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([2, 4]))
    prompts = torch.tensor([[5, 6, 7], [30, 31, 32]])
    hf_proc = BrakingLogitsProcessor(tables(), cfg, eos_token_id=[])
    hf = llama.generate(
        prompts, attention_mask=torch.ones_like(prompts), do_sample=False, max_new_tokens=10,
        logits_processor=LogitsProcessorList([hf_proc]), eos_token_id=None, pad_token_id=0,
    )[:, 3:].tolist()
    ours = generate(llama, None, prompts.tolist(), temperature=0.0, max_new_tokens=10, eos_token_id=[],
                    braking=BrakingLogitsProcessor(tables(), cfg), progress=False)
    assert hf == ours.token_ids
    assert hf[0][2:6] == BRAKE and hf[1][4:8] == BRAKE
