"""Braking step: automaton vs a brute-force matcher, backends vs the reference, the
LogitsProcessor and vLLM adapters vs braking_step, trigger edge cases and bad inputs, the
packed layout against the C++ header, and the BrakingController vs braking_step (the op's
opcheck is in test_opcheck.py)."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE
from mta_kernels.braking import (
    BRAKE_REASONS,
    DELIM_START,
    SBT_MARKERS,
    BrakingConfig,
    BrakingController,
    BrakingState,
    MarkerTables,
    braking_step,
    braking_step_reference,
)
from mta_kernels.integrations.transformers import BrakingLogitsProcessor
from mta_kernels.integrations.vllm import VllmBrakingLogitsProcessor
from mta_kernels.braking.layout import STATE_FIELDS, Config, Counter, Flag, TableField

NEG_INF = float("-inf")
KERNELS = [b for b in mk.available_backends(DEVICE) if b in ("cpp", "cuda")]
BACKENDS = ["reference", *KERNELS]


# --------------------------------------------------------------------------- helpers
def brute_coverage(stream: list[int], patterns: list[tuple[int, ...]]) -> list[int]:
    """marker_tokens after each prefix: positions covered by occurrences inside the prefix."""
    out, covered = [], set()
    for t in range(1, len(stream) + 1):
        for p in patterns:
            L = len(p)
            if L <= t and tuple(stream[t - L:t]) == p:
                covered.update(range(t - L, t))
        out.append(len(covered))
    return out


def run_stream(stream, tables, backend, monkeypatch, device=DEVICE):
    """Consume ``stream`` in one row (no triggers) and record marker_tokens after each token."""
    monkeypatch.setenv("MTA_BACKEND", backend)
    tables = tables.to(device)
    state = BrakingState.new(1, device)
    cfg = BrakingConfig()
    counts, steps = [], []
    for tok in stream:
        braking_step(torch.zeros(1, tables.vocab_size, device=device), torch.tensor([tok], device=device),
                     state, tables, cfg)
        counts.append(int(state.marker_tokens[0]))
        steps.append(int(state.steps[0]))
    return counts, steps, state


def random_patterns(rng, alphabet, n, max_len=4):
    return [tuple(rng.choice(alphabet) for _ in range(rng.randint(1, max_len))) for _ in range(n)]


# --------------------------------------------------------------------------- automaton
@pytest.mark.parametrize("seed", range(6))
def test_automaton_matches_brute_force_synthetic(seed, monkeypatch):
    rng = random.Random(seed)
    V = 40
    alphabet = list(range(3, 3 + 2 + seed))  # few symbols: dense, overlapping matches
    patterns = random_patterns(rng, alphabet, 3 + seed)
    step_ids = [alphabet[0], 30]
    tables = MarkerTables.from_token_ids(patterns, step_ids, 1, [2, 1], V)
    assert tables.token_class.shape == (V,) and int(tables.token_class.max()) <= len(alphabet)
    stream = [rng.choice(alphabet + [20, 30, 39]) for _ in range(120)]
    want = brute_coverage(stream, list(set(patterns)))
    want_steps = [sum(t in step_ids for t in stream[:i + 1]) for i in range(len(stream))]
    for backend in BACKENDS:
        counts, steps, state = run_stream(stream, tables, backend, monkeypatch)
        assert counts == want, backend
        assert steps == want_steps, backend
        assert int(state.thinking_tokens[0]) == len(stream)


def test_overlaps_counted_once():
    # "5 6" and "6 7" overlap on 6; "5 6 7" covers 3 tokens, not 4.
    tables = MarkerTables.from_token_ids([[5, 6], [6, 7]], [], 1, [1], 10)
    assert brute_coverage([5, 6, 7], [(5, 6), (6, 7)]) == [0, 2, 3]
    state = BrakingState.new(1)
    for tok in [5, 6, 7]:
        braking_step(torch.zeros(1, 10), torch.tensor([tok]), state, tables, BrakingConfig())
    assert int(state.marker_tokens[0]) == 3


@pytest.fixture(scope="module")
def smol_tokenizer():
    from mta.models import load_smollm2

    return load_smollm2()[1]


def test_automaton_on_smollm2_tokenizer(smol_tokenizer, monkeypatch):
    tok = smol_tokenizer
    tables = MarkerTables.from_tokenizer(tok, end_think="<|im_end|>", brake_text="\n\nOkay, done.<|im_end|>")
    # The patterns, derived independently: every variant, with and without a leading space.
    patterns = set()
    for m in SBT_MARKERS:
        for v in {m, m[0].lower() + m[1:], m[0].upper() + m[1:]}:
            for text in (v, " " + v):
                patterns.add(tuple(tok.encode(text, add_special_tokens=False)))
    text = ("Let me compute 12 * 7 = 84.\n\nWait, let me verify: 12 * 7 is 84. Hmm, but maybe I should "
            "consider 7 * 12.\n\nHowever, Let me just double-check. Perhaps. Just to make sure, recheck it."
            "\n\nAnother way: Hold on, not sure; trace back. Waiting is not a marker-free word.")
    stream = tok.encode(text, add_special_tokens=False)
    want = brute_coverage(stream, sorted(patterns))
    assert want[-1] > 20
    for backend in BACKENDS:
        counts, steps, _ = run_stream(stream, tables, backend, monkeypatch)
        assert counts == want, backend
        # SmolLM2 often splits "\n\n" into two "\n" tokens: the blank-line matcher counts
        # the delimiters of the text, however they were tokenised.
        assert steps[-1] == blank_line_breaks(text) == 3
    assert tables.brake_ids[-1].item() == 2 and tables.transitions.numel() < 100_000


def blank_line_breaks(text: str) -> int:
    """Step delimiters as mta.sbt.split_steps sees them (leading blank lines are none)."""
    import re

    return len(re.findall(r"\n[ \t]*\n\s*", re.sub(r"^\s*", "", text)))


def test_step_delimiters_split_across_tokens_on_the_real_tokenizer(smol_tokenizer, monkeypatch):
    tok = smol_tokenizer
    tables = MarkerTables.from_tokenizer(tok, end_think="<|im_end|>", brake_text="\n\nOkay, done.<|im_end|>")
    rng = random.Random(0)
    pieces = ["\n", "\n\n", " ", "\t", "\n \n", "word", " 12.", ":", "\n\n\n", "x\n", "\r\n", "  \n"]
    for trial in range(40):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        stream = tok.encode(text, add_special_tokens=False)
        assert "".join(tok.decode([t]) for t in stream) == text  # byte-level BPE: tokens spell the text
        for backend in (BACKENDS if trial < 8 else ["reference"]):
            _, steps, _ = run_stream(stream, tables, backend, monkeypatch)
            assert steps[-1] == blank_line_breaks(text), (backend, text)
    # Two "\n" tokens make one delimiter; a third adds none; text after it starts the next step.
    nl = tok.encode("\n", add_special_tokens=False)
    assert len(nl) == 1
    word = tok.encode("Hi", add_special_tokens=False)
    _, steps, _ = run_stream(word + nl + nl + nl + word + nl + word, tables, "reference", monkeypatch)
    assert steps == [0, 0, 1, 1, 1, 1, 1]
    assert tables.step_table.shape[0] < 64 and tables.step_class.dtype == torch.uint8


def test_step_tables_argument_is_checked():
    cls_ = torch.zeros(10, dtype=torch.uint8)
    table = torch.tensor([[0, 0, 0]], dtype=torch.int32)
    MarkerTables.from_token_ids([[5]], [], 3, [3], 10, step_tables=(cls_, table))
    with pytest.raises(ValueError, match="step_tables"):
        MarkerTables.from_token_ids([[5]], [], 3, [3], 10, step_tables=(cls_[:5], table))
    with pytest.raises(ValueError, match="step_tables"):
        MarkerTables.from_token_ids([[5]], [], 3, [3], 10, step_tables=(cls_ + 1, table))
    with pytest.raises(ValueError, match="step_tables"):
        MarkerTables.from_token_ids([[5]], [], 3, [3], 10, step_tables=(cls_, table + 3))


def test_tables_small_at_qwen_vocab():
    rng = random.Random(0)
    patterns = [tuple(rng.randrange(151936) for _ in range(rng.randint(1, 5))) for _ in range(150)]
    t = MarkerTables.from_token_ids(patterns, [271, 382], 151668, [151668], 151936)
    assert t.token_class.dtype == torch.int32 and t.token_class.shape == (151936,)
    assert t.transitions.numel() * 4 < 2_000_000


# --------------------------------------------------------------------------- backends equal
def random_run(backend, monkeypatch, *, dtype, seed, B=9, V=50, steps=60, margin=True):
    monkeypatch.setenv("MTA_BACKEND", backend)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    patterns = random_patterns(rng, [3, 4, 5, 6], 6)
    tables = MarkerTables.from_token_ids(patterns, [7, 8], 1, [9, 10, 11, 1], V - 3).to(DEVICE)
    state = BrakingState.new(B, DEVICE, in_think=torch.tensor([i != 2 for i in range(B)]))
    history = []
    last = None
    for step in range(steps):
        logits = (torch.randn(B, V, generator=g) * 3).to(dtype)
        logits[0, 5] = float("nan")
        if step % 7 == 3:
            logits[1, :] = float("nan")
        cfg = BrakingConfig(  # per-row and changed between steps
            max_thinking_tokens=torch.tensor([rng.choice([-1, 10, 25, 40, 100]) for _ in range(B)]),
            marker_ratio=rng.choice([None, 0.3, torch.rand(B, generator=g) * 0.6 + 0.2]),
            min_thinking_tokens=rng.choice([0, 5]),
            max_steps=rng.choice([None, 4, torch.randint(-1, 8, (B,), generator=g)]),
            end_think_margin=(rng.choice([None, 1.0, torch.rand(B, generator=g) * 3]) if margin else None),
        )
        logits = logits.to(DEVICE)
        braking_step(logits, last, state, tables, cfg)
        history.append((logits.cpu(), [t.cpu().clone() for t in state.tensors()]))
        probs = torch.softmax(logits.float().cpu().nan_to_num(nan=NEG_INF), -1).nan_to_num(1.0 / V)
        nxt = torch.multinomial(probs + 1e-9, 1, generator=g).squeeze(1)
        nxt[3] = rng.choice([-1, V - 1, V - 2, 1, 3])  # no token, outside the tables, end, marker
        last = nxt.to(DEVICE)
    return history


@pytest.mark.parametrize("backend", KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backends_equal_reference(backend, dtype, seed, monkeypatch):
    ref = random_run("reference", monkeypatch, dtype=dtype, seed=seed)
    out = random_run(backend, monkeypatch, dtype=dtype, seed=seed)
    reasons = set()
    for (rl, rs), (ol, os_) in zip(ref, out):
        torch.testing.assert_close(ol, rl, equal_nan=True, rtol=0, atol=0)
        for a, b in zip(os_, rs):
            assert torch.equal(a, b)
        reasons |= set(rs[6].tolist())
    assert len(reasons - {0}) >= 2  # several triggers are exercised


# --------------------------------------------------------------------------- processors
def test_logits_processor_equals_braking_step(monkeypatch):
    B, V = 5, 40
    tables = MarkerTables.from_token_ids([[3, 4], [4]], [6], 1, [7, 1], V)
    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([3, 50, 50, 50, 0]), marker_ratio=0.5, min_thinking_tokens=4)
    proc = BrakingLogitsProcessor(tables, cfg, eos_token_id=[])
    state = BrakingState.new(B)
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(B, 2, dtype=torch.long)
    for step in range(20):
        logits = torch.randn(B, V, generator=g)
        want = braking_step(logits.clone(), None if step == 0 else ids[:, -1], state, tables, cfg)
        got = proc(ids, logits.clone())
        assert torch.equal(got, want)
        nxt = torch.where(torch.isinf(want).any(1), want.argmax(1), torch.randint(2, 8, (B,), generator=g))
        ids = torch.cat([ids, nxt[:, None]], 1)
    for a, b in zip(proc.state.tensors(), state.tensors()):
        assert torch.equal(a, b)
    # A new generate call (another batch size) starts over.
    proc.cfg = BrakingConfig(max_thinking_tokens=3)
    proc(torch.zeros(2, 3, dtype=torch.long), torch.randn(2, V))
    assert proc.state.batch_size == 2 and int(proc.state.thinking_tokens.sum()) == 0


class _Dir:  # stand-in for vllm's MoveDirectionality
    def __init__(self, name):
        self.name = name


def test_vllm_adapter_with_stand_in_interface():
    V = 30
    tables = MarkerTables.from_token_ids([[3]], [6], 1, [7, 1], V)
    proc = VllmBrakingLogitsProcessor(None, "cpu", False, tables=tables, capacity=4)
    assert not proc.is_argmax_invariant()
    out_a, out_b = [], []
    params_a = SimpleNamespace(extra_args={"braking": {"max_thinking_tokens": 2}})
    params_b = SimpleNamespace(extra_args=None)
    upd = SimpleNamespace(batch_size=2, added=[(0, params_a, [1], out_a), (1, params_b, [1], out_b)], removed=[], moved=[])
    proc.update_state(upd)
    forced, slot = [], {"a": 0, "b": 1}
    outs = {"a": out_a, "b": out_b}
    for step in range(5):
        res = proc.apply(torch.zeros(2, V))
        ra, rb = res[slot["a"]], res[slot["b"]]
        assert torch.equal(rb, torch.zeros(V))  # never thinking: untouched
        tok = int(ra.argmax()) if torch.isinf(ra).any() else 4
        if torch.isinf(ra).any():
            forced.append(tok)
        outs["a"].append(tok)
        outs["b"].append(5)
        if step == 1:  # swap the two slots mid-generation
            proc.update_state(SimpleNamespace(batch_size=2, added=[], removed=[], moved=[(0, 1, _Dir("SWAP"))]))
            slot = {"a": 1, "b": 0}
    assert forced == [7, 1]
    assert int(proc.state.brake_reason[1]) == 1 and not bool(proc.state.in_think[1])
    VllmBrakingLogitsProcessor.validate_params(params_a)
    with pytest.raises(TypeError):
        VllmBrakingLogitsProcessor.validate_params(SimpleNamespace(extra_args={"braking": {"bogus": 1}}))


# --------------------------------------------------------------------------- edge cases
@pytest.fixture
def small():
    return MarkerTables.from_token_ids([[3, 4]], [6], 1, [7, 8, 9, 1], 12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_budget_zero_brakes_at_once_and_forces_whole_brake_text(backend, small, monkeypatch):
    monkeypatch.setenv("MTA_BACKEND", backend)
    state = BrakingState.new(2)
    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([0, 2]))
    last, forced = None, [[], []]
    for _ in range(7):
        logits = torch.randn(2, 12)
        braking_step(logits, last, state, small, cfg)
        for b in range(2):
            if torch.isinf(logits[b]).any():
                assert (logits[b] == 0).sum() == 1 and torch.isinf(logits[b]).sum() == 11
                forced[b].append(int(logits[b].argmax()))
        last = torch.where(torch.isinf(logits).any(1), logits.argmax(1), torch.tensor(5))
    # Brake text (4 tokens) longer than the remaining budget: forced in full after it.
    assert forced == [[7, 8, 9, 1], [7, 8, 9, 1]]
    assert state.brake_reason.tolist() == [1, 1] and state.braked.all() and not state.in_think.any()
    assert state.thinking_tokens.tolist() == [0, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_natural_end_phases_and_untouched_rows(backend, small, monkeypatch):
    monkeypatch.setenv("MTA_BACKEND", backend)
    state = BrakingState.new(4, in_think=torch.tensor([True, True, False, True]))
    cfg = BrakingConfig(max_thinking_tokens=torch.tensor([100, 100, 100, 1]), max_steps=torch.tensor([-1, 2, -1, -1]))
    seq = [torch.tensor(x) for x in ([-1, -1, -1, -1], [5, 6, 5, 5], [1, 6, 5, 7])]
    for last in seq:
        logits = torch.randn(4, 12)
        before = logits.clone()
        braking_step(logits, last, state, small, cfg)
        assert torch.equal(logits[2], before[2])  # never thinking
    assert state.in_think.tolist() == [False, True, False, True]  # row 0 ended naturally
    assert not state.braked[0] and state.brake_reason.tolist() == [0, 3, 0, 1]
    assert state.thinking_tokens.tolist() == [1, 2, 0, 1] and state.brake_pos.tolist() == [0, 0, 0, 1]
    # Row 0 after thinking: untouched from now on.
    logits = torch.randn(4, 12)
    before = logits.clone()
    braking_step(logits, torch.tensor([1, 7, 1, 8]), state, small, cfg)
    assert torch.equal(logits[0], before[0]) and torch.equal(logits[2], before[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ratio_min_tokens_and_margin(backend, small, monkeypatch):
    monkeypatch.setenv("MTA_BACKEND", backend)
    state = BrakingState.new(2)
    cfg = BrakingConfig(marker_ratio=0.5, min_thinking_tokens=4)
    for tok in [3, 4, 5]:  # 2/3 covered but below min_thinking_tokens
        braking_step(torch.zeros(2, 12), torch.tensor([tok, 5]), state, small, cfg)
    assert not state.braking.any()
    braking_step(torch.zeros(2, 12), torch.tensor([5, 5]), state, small, cfg)  # 2/4 = 0.5
    assert state.brake_reason.tolist() == [2, 0]
    # Margin: row 1 has end_think within 0.5 of the max.
    logits = torch.zeros(2, 12)
    logits[1, 0], logits[1, 1] = 3.0, 2.6
    braking_step(logits, torch.tensor([7, 5]), state, small, BrakingConfig(end_think_margin=torch.tensor([-NEG_INF, 0.5])))
    assert state.brake_reason.tolist() == [2, 4] and logits[1].argmax() == 7


def test_margin_off_leaves_thinking_rows_alone(small):
    state = BrakingState.new(1)
    logits = torch.full((1, 12), float("nan"))
    braking_step(logits, None, state, small, BrakingConfig())
    assert logits.isnan().all() and not state.braking.any()


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_name_the_argument(small):
    state = BrakingState.new(2)
    cfg = BrakingConfig()
    with pytest.raises(TypeError, match="logits"):
        braking_step(torch.zeros(2, 12, dtype=torch.int64), None, state, small, cfg)
    with pytest.raises(ValueError, match="logits"):
        braking_step(torch.zeros(2, 12)[:, ::2], None, state, small, cfg)
    with pytest.raises(ValueError, match="state"):
        braking_step(torch.zeros(3, 12), None, state, small, cfg)
    with pytest.raises(ValueError, match="last_tokens"):
        braking_step(torch.zeros(2, 12), torch.zeros(3, dtype=torch.long), state, small, cfg)
    with pytest.raises(TypeError, match="last_tokens"):
        braking_step(torch.zeros(2, 12), torch.zeros(2), state, small, cfg)
    with pytest.raises(ValueError, match="vocabulary"):
        braking_step(torch.zeros(2, 8), None, state, small, cfg)
    with pytest.raises(ValueError, match="max_thinking_tokens"):
        braking_step(torch.zeros(2, 12), None, state, small, BrakingConfig(max_thinking_tokens=torch.zeros(3, dtype=torch.long)))
    with pytest.raises(TypeError, match="max_steps"):
        braking_step(torch.zeros(2, 12), None, state, small, BrakingConfig(max_steps=2.5))
    with pytest.raises(ValueError, match="marker_ratio"):
        braking_step(torch.zeros(2, 12), None, state, small, BrakingConfig(marker_ratio=-0.1))
    with pytest.raises(TypeError, match="cfg"):
        braking_step(torch.zeros(2, 12), None, state, small, {"max_steps": 3})
    with pytest.raises(ValueError, match="brake_ids"):
        MarkerTables.from_token_ids([[3]], [], 1, [7, 8], 12)
    with pytest.raises(ValueError, match="markers"):
        MarkerTables.from_token_ids([[3, 99]], [], 1, [1], 12)
    with pytest.raises(TypeError, match="markers"):
        MarkerTables.from_token_ids(["Wait"], [], 1, [1], 12)
    with pytest.raises(ValueError, match="in_think"):
        BrakingState.new(2, in_think=torch.ones(3, dtype=torch.bool))


# --------------------------------------------------------------------------- packed layout
def test_reference_matches_spec_order_of_triggers():
    # Budget wins over ratio and steps when several hold at once.
    t = MarkerTables.from_token_ids([[3]], [3], 1, [1], 8)
    state = BrakingState.new(1)
    logits = torch.zeros(1, 8)
    config = BrakingConfig(max_thinking_tokens=1, marker_ratio=0.5, min_thinking_tokens=0, max_steps=1)
    braking_step_reference(logits, torch.tensor([3]), state.counters, state.flags, t.packed, t.layout,
                           config.normalised(1, torch.device("cpu")))
    assert state.brake_reason.tolist() == [1] and logits[0, 1] == 0


def _cpp_enum(text: str, opening: str) -> list[str]:
    """Member declarations (comments dropped) of the enum that follows ``opening``."""
    body = re.search(re.escape(opening) + r"[^{]*\{(.*?)\};", text, re.S).group(1)
    return [m.strip() for m in re.sub(r"//[^\n]*", "", body).split(",") if m.strip()]


def _upper_snake(cpp_name: str) -> str:  # kThinkingTokens -> THINKING_TOKENS
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cpp_name[1:]).upper()


def test_layout_names_the_same_fields_as_the_cpp_header():
    text = (Path(__file__).resolve().parents[1] / "csrc" / "braking_row.h").read_text()
    for namespace, enum in (("counter", Counter), ("flag", Flag), ("config", Config), ("table", TableField)):
        members = _cpp_enum(text, f"namespace {namespace} {{")
        assert members[-1] == "kCount", namespace
        assert [_upper_snake(m) for m in members[:-1]] == [m.name for m in enum], namespace
    reasons = {}
    for member in _cpp_enum(text, "enum class BrakeReason"):
        name, value = (x.strip() for x in member.split("="))
        reasons[int(value)] = _upper_snake(name).lower().replace("_", " ")
    assert reasons == BRAKE_REASONS


def test_state_fields_are_views_of_the_packed_tensors():
    state = BrakingState.new(3, in_think=torch.tensor([True, False, True]))
    assert state.counters.shape == (3, len(Counter)) and state.flags.shape == (3, len(Flag))
    assert state.delim_state.tolist() == [DELIM_START] * 3 and state.in_think.tolist() == [True, False, True]
    state.steps[1] = 5
    state.braked = torch.tensor([False, True, False])  # assignment copies into the column
    assert state.counters[1, Counter.STEPS] == 5 and state.flags[:, Flag.BRAKED].tolist() == [False, True, False]
    # Slices of the fields (what the vLLM adapter passes) stay views of the same storage...
    view = BrakingState(*(t[:2] for t in state.tensors()))
    view.thinking_tokens += 7
    view.reset_row(0, False)
    assert state.thinking_tokens.tolist() == [0, 7, 0] and not state.in_think[0]
    assert state.delim_state[0] == DELIM_START and state.steps[1] == 5
    # ... separate tensors (by position or by name) are copied into a new pair.
    fields = {name: t.clone() for name, t in zip(STATE_FIELDS, state.tensors())}
    for copy in (BrakingState(*fields.values()), BrakingState(**fields)):
        assert torch.equal(copy.counters, state.counters) and torch.equal(copy.flags, state.flags)
        copy.steps += 1
        assert state.steps.tolist() == [0, 5, 0]
    clone = state.clone()
    clone.braking[2] = True
    assert not state.braking[2] and torch.equal(state.to("cpu").counters, state.counters)
    with pytest.raises(TypeError, match="missing"):
        BrakingState(*list(fields.values())[:5])
    with pytest.raises(ValueError, match="counters"):
        BrakingState(state.counters[:, :4], state.flags)
    with pytest.raises(ValueError, match="contiguous"):
        BrakingState(state.counters.t().contiguous().t(), state.flags)


def test_tables_are_views_of_one_buffer():
    t = MarkerTables.from_token_ids([[5, 6], [6]], [9], 3, [7, 3], vocab_size=10)
    assert t.packed.dtype == torch.uint8 and t.packed.dim() == 1
    for name in ("token_class", "transitions", "match_len", "step_class", "step_table", "brake_ids"):
        view = getattr(t, name)
        assert view.untyped_storage().data_ptr() == t.packed.untyped_storage().data_ptr(), name
    assert t.brake_ids.tolist() == [7, 3] and t.match_len.tolist() == [0, 0, 2, 1]
    moved = t.to("cpu")
    assert moved is t
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.end_think_id = 4
    with pytest.raises(ValueError, match="malformed"):
        dataclasses.replace(t, match_len=t.match_len.long())
    with pytest.raises(ValueError, match="malformed"):
        dataclasses.replace(t, brake_ids=t.brake_ids[:0])


@pytest.mark.parametrize("backend", KERNELS)
def test_raw_op_rejects_malformed_arguments(backend, small):
    t = small.to(DEVICE)
    state = BrakingState.new(2, DEVICE)
    config = BrakingConfig().normalised(2, torch.device(DEVICE))
    last = torch.tensor([3, -1], device=DEVICE)

    def call(**changes):
        args = dict(logits=torch.zeros(2, 12, device=DEVICE), last_tokens=last, counters=state.counters,
                    flags=state.flags, tables=t.packed, table_layout=list(t.layout), config=config)
        args.update(changes)
        torch.ops.mta.braking_step(*args.values())

    call()
    bad_layouts = {
        "outside": TableField.BRAKE_IDS_OFFSET, "misaligned": TableField.TRANSITIONS_OFFSET,
        "states": TableField.STATES, "classes": TableField.CLASSES,
    }
    for what, entry in bad_layouts.items():
        layout = list(t.layout)
        layout[entry] = {"outside": t.packed.numel(), "misaligned": layout[entry] + 2}.get(what, 2**62)
        with pytest.raises(RuntimeError, match="marker tables"):
            call(table_layout=layout)
    with pytest.raises(RuntimeError, match="table_layout"):
        call(table_layout=list(t.layout)[:-1])
    with pytest.raises(RuntimeError, match="end_think_id"):
        call(logits=torch.zeros(2, 1, device=DEVICE))
    with pytest.raises(RuntimeError, match="counters"):
        call(counters=state.counters[:, :5].contiguous())
    with pytest.raises(RuntimeError, match="flags"):
        call(flags=state.flags.long())
    with pytest.raises(RuntimeError, match="config"):
        call(config=config.float())
    with pytest.raises(RuntimeError, match="last_tokens"):
        call(last_tokens=last.int())
    with pytest.raises(RuntimeError, match="tables"):
        call(tables=t.packed.view(torch.int8))


# --------------------------------------------------------------------------- controller
def controller_run(backend, monkeypatch, *, functional: bool, seed: int = 0, B: int = 6, V: int = 30, steps: int = 40):
    """Random decoding through the controller (or braking_step), config edited between steps."""
    monkeypatch.setenv("MTA_BACKEND", backend)
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    tables = MarkerTables.from_token_ids(random_patterns(rng, [3, 4, 5], 4), [6], 1, [7, 8, 1], V)
    budget = torch.tensor([rng.choice([-1, 5, 12, 30]) for _ in range(B)], device=DEVICE)
    cfg = BrakingConfig(max_thinking_tokens=budget, marker_ratio=0.4, min_thinking_tokens=4)
    in_think = torch.tensor([i != 1 for i in range(B)])
    controller = BrakingController(tables, cfg, B, DEVICE, in_think=in_think)
    state = BrakingState.new(B, DEVICE, in_think=in_think)
    tables = tables.to(DEVICE)
    history, last = [], None
    for step in range(steps):
        if step == 10:
            budget[0] = 3  # in place
        if step == 20:
            controller.cfg.max_steps = 2  # a new scalar on the same config
            cfg.max_steps = 2
        if step == 30:
            cfg = controller.cfg = BrakingConfig(end_think_margin=0.5)  # a new config
        logits = (torch.randn(B, V, generator=g) * 2).to(DEVICE)
        if functional:
            braking_step(logits, last, state, tables, cfg)
        else:
            controller.step(logits, last)
            state = controller.state
        history.append((logits.cpu(), state.counters.cpu().clone(), state.flags.cpu().clone()))
        nxt = torch.where(torch.isinf(logits).any(1).cpu(), logits.argmax(1).cpu(), torch.randint(2, V, (B,), generator=g))
        last = nxt.to(DEVICE)
    return history


@pytest.mark.parametrize("backend", BACKENDS)
def test_controller_equals_braking_step(backend, monkeypatch):
    want = controller_run(backend, monkeypatch, functional=True)
    got = controller_run(backend, monkeypatch, functional=False)
    for (wl, wc, wf), (gl, gc, gf) in zip(want, got):
        assert torch.equal(gl, wl) and torch.equal(gc, wc) and torch.equal(gf, wf)
    assert len(set(want[-1][1][:, Counter.BRAKE_REASON].tolist()) - {0}) >= 2  # several triggers fired


def test_controller_checks_once_and_guards_shapes(small):
    controller = BrakingController(small, BrakingConfig(max_steps=1), 2)
    assert controller.backend == ("cpp" if mk.extension_loaded() else "reference")
    assert controller.state.batch_size == 2 and controller.tables.device == torch.device("cpu")
    with pytest.raises(ValueError, match="B=2"):
        controller.step(torch.zeros(3, 12))
    with pytest.raises(ValueError, match="contiguous"):
        controller.step(torch.zeros(2, 24)[:, ::2])
    with pytest.raises(ValueError, match="vocabulary"):
        controller.step(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="last_tokens"):
        controller.step(torch.zeros(2, 12), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="marker_ratio"):
        controller.cfg = BrakingConfig(marker_ratio=-1.0)
    with pytest.raises(TypeError, match="cfg"):
        BrakingController(small, {"max_steps": 1}, 2)
    with pytest.raises(TypeError, match="tables"):
        BrakingController(None, BrakingConfig(), 2)
    with pytest.raises(ValueError, match="in_think"):
        BrakingController(small, BrakingConfig(), 2, in_think=torch.ones(3, dtype=torch.bool))
    empty = BrakingController(small, BrakingConfig(), 0)
    assert empty.step(torch.zeros(0, 12)).shape == (0, 12)


def test_config_edits_between_steps_take_effect():
    """normalised() is memoised: in-place edits, new tensors and new scalars must still be seen."""
    tables = MarkerTables.from_token_ids([[4]], [5], 2, [3, 2], vocab_size=8)
    budget = torch.tensor([100, 100])
    cfg = BrakingConfig(max_thinking_tokens=budget)
    state = BrakingState.new(2)
    braking_step(torch.zeros(2, 8), None, state, tables, cfg)
    braking_step(torch.zeros(2, 8), torch.tensor([6, 6]), state, tables, cfg)
    assert not bool(state.braking.any())
    budget[0] = 1  # in place
    braking_step(torch.zeros(2, 8), torch.tensor([6, 6]), state, tables, cfg)
    assert state.braking.tolist() == [True, False]
    cfg.max_thinking_tokens = torch.tensor([100, 2])  # a new tensor
    braking_step(torch.zeros(2, 8), torch.tensor([3, 6]), state, tables, cfg)
    assert state.braking.tolist() == [True, True]
    cfg2 = BrakingConfig(max_steps=5)
    state2 = BrakingState.new(1)
    braking_step(torch.zeros(1, 8), torch.tensor([5]), state2, tables, cfg2)
    cfg2.max_steps = 1  # a new scalar
    braking_step(torch.zeros(1, 8), torch.tensor([6]), state2, tables, cfg2)
    assert bool(state2.braking[0]) and int(state2.brake_reason[0]) == 3


def test_marker_list_is_the_one_sbt_scores_with():
    from mta.sbt.markers import SBT_MARKERS as SCORING_MARKERS

    assert SBT_MARKERS == SCORING_MARKERS and len(SBT_MARKERS) == 26


# --------------------------------------------------------------------------- out-of-range indices
def _stepped_state(tables, tokens, device=DEVICE):
    """A one-row state after consuming ``tokens`` with ``tables`` (no triggers)."""
    state = BrakingState.new(1, device)
    for tok in [None, *tokens]:
        last = None if tok is None else torch.tensor([tok], device=device)
        braking_step(torch.zeros(1, tables.vocab_size, device=device), last, state, tables, BrakingConfig())
    return state


@pytest.fixture
def big_and_small():
    """Tables with many automaton states, and tables with few over the same vocabulary."""
    big = MarkerTables.from_token_ids([[3, 4, 5, 6, 7, 8, 9]], [10], 1, [11, 12, 13, 1], 16)
    small = MarkerTables.from_token_ids([[3]], [10], 1, [11, 1], 16)
    assert big.num_states > 6 and small.num_states == 2
    return big.to(DEVICE), small.to(DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_carried_to_smaller_tables_raises_instead_of_reading_out_of_bounds(backend, big_and_small, monkeypatch):
    """Issue 14 item 1: the C++ op read transitions[ac_state * C + cls] past the table (a
    segfault); every backend now names the field."""
    monkeypatch.setenv("MTA_BACKEND", backend)
    big, small = big_and_small
    state = _stepped_state(big, [3, 4, 5, 6])
    assert int(state.ac_state[0]) >= small.num_states
    with pytest.raises(ValueError, match=r"ac_state\[0\] = \d+ is outside the tables' 2 automaton states"):
        braking_step(torch.zeros(1, 16, device=DEVICE), torch.tensor([3], device=DEVICE), state, small, BrakingConfig())
    # A braking state whose forced position is past a shorter brake text.
    braking = _stepped_state(big, [])
    braking_step(torch.zeros(1, 16, device=DEVICE), None, braking, big, BrakingConfig(max_thinking_tokens=0))
    for tok in (11, 12, 13):
        braking_step(torch.zeros(1, 16, device=DEVICE), torch.tensor([tok], device=DEVICE), braking, big,
                     BrakingConfig())
    assert int(braking.brake_pos[0]) == 3 and bool(braking.braking[0])
    with pytest.raises(ValueError, match=r"brake_pos\[0\] = 3 is outside the tables' 2 forced tokens"):
        braking_step(torch.zeros(1, 16, device=DEVICE), None, braking, small, BrakingConfig())
    # A state built from tensors is checked on first use too.
    counters = BrakingState.new(1, DEVICE).counters.clone()
    counters[0, Counter.DELIM_STATE] = 7
    flags = torch.tensor([[True, False, False]], device=DEVICE)
    with pytest.raises(ValueError, match=r"delim_state\[0\] = 7"):
        braking_step(torch.zeros(1, 16, device=DEVICE), None, BrakingState(counters, flags), small, BrakingConfig())
    # Rows done thinking read no table: their stale values are fine.
    done = _stepped_state(big, [3, 4, 5, 6, 1])
    assert not bool(done.in_think[0])
    braking_step(torch.zeros(1, 16, device=DEVICE), torch.tensor([3], device=DEVICE), done, small, BrakingConfig())


@pytest.mark.parametrize("backend", KERNELS)
def test_raw_op_checks_or_clamps_every_index(backend, big_and_small):
    """The C++ op itself: out-of-range state values raise on the CPU (a ValueError naming the
    field) and are clamped on the GPU (no host sync); out-of-range table contents (hand-built
    tables that bypass MarkerTables' checks) are clamped, the same as the reference does."""
    big, small = big_and_small
    state = _stepped_state(big, [3, 4, 5, 6])
    args = (state.counters, state.flags, small.packed, list(small.layout),
            BrakingConfig().normalised(1, torch.device(DEVICE)))
    last = torch.tensor([3], device=DEVICE)
    if DEVICE == "cpu":
        with pytest.raises(ValueError, match="ac_state"):
            torch.ops.mta.braking_step(torch.zeros(1, 16), last, *args)
    else:
        torch.ops.mta.braking_step(torch.zeros(1, 16, device=DEVICE), last, *args)
        torch.cuda.synchronize()
        assert 0 <= int(state.ac_state[0]) < small.num_states
    # Corrupt tables: every table value out of range (what MarkerTables would refuse).
    packed = small.packed.clone()
    views = {name: getattr(small, name) for name in ("token_class", "transitions", "step_class", "brake_ids")}
    offsets = {name: view.data_ptr() - small.packed.data_ptr() for name, view in views.items()}
    for name, value in (("token_class", 10**6), ("transitions", -5), ("step_class", 250), ("brake_ids", 10**9)):
        view = views[name]
        packed[offsets[name]:offsets[name] + view.numel() * view.element_size()].view(view.dtype).fill_(value)
    want, got = BrakingState.new(2, DEVICE), BrakingState.new(2, DEVICE)
    config = BrakingConfig(max_thinking_tokens=torch.tensor([3, -1], device=DEVICE)).normalised(2, torch.device(DEVICE))
    for tok in (None, 3, 10, 3, 11):
        last = torch.full((2,), -1 if tok is None else tok, device=DEVICE)
        ref_logits, op_logits = torch.zeros(2, 16, device=DEVICE), torch.zeros(2, 16, device=DEVICE)
        braking_step_reference(ref_logits, last, want.counters, want.flags, packed, small.layout, config)
        torch.ops.mta.braking_step(op_logits, last, got.counters, got.flags, packed, list(small.layout), config)
        assert torch.equal(op_logits, ref_logits) and torch.equal(got.counters, want.counters)
    assert int(got.brake_reason[0]) == 1 and op_logits[0].argmax() == 1  # a forced id past V forces end_think_id


@pytest.mark.skipif(DEVICE != "cuda", reason="the reference clamps state values only where it cannot check them")
def test_reference_and_cuda_clamp_state_values_alike(big_and_small):
    big, small = big_and_small
    config = BrakingConfig(max_thinking_tokens=torch.tensor([-1, 1, -1], device="cuda")).normalised(3, torch.device("cuda"))
    want, got = BrakingState.new(3, "cuda"), BrakingState.new(3, "cuda")
    for s in (want, got):
        s.ac_state.copy_(torch.tensor([99, -4, 1]))
        s.delim_state.copy_(torch.tensor([5, -1, 2]))
    for tok in (3, 10, 11, 12, 1):
        last = torch.full((3,), tok, device="cuda")
        ref_logits, op_logits = torch.zeros(3, 16, device="cuda"), torch.zeros(3, 16, device="cuda")
        braking_step_reference(ref_logits, last, want.counters, want.flags, small.packed, small.layout, config)
        torch.ops.mta.braking_step(op_logits, last, got.counters, got.flags, small.packed, list(small.layout), config)
        assert torch.equal(op_logits, ref_logits) and torch.equal(got.counters, want.counters)


def test_state_is_checked_once_per_table_change(big_and_small, monkeypatch):
    """The check reads the state (a host sync on the GPU) only when the tables shrink or the
    state is new to the library, never per step; row views of a checked state share it."""
    import mta_kernels.braking.state as state_module

    calls = []
    real = state_module.state_problem
    monkeypatch.setattr(state_module, "state_problem", lambda *a: calls.append(a) or real(*a))
    big, small = big_and_small
    state = BrakingState.new(4, DEVICE)
    for tables in (small, big):  # tables at least as large as the last: no check
        for tok in (None, 3, 4, 5):
            last = None if tok is None else torch.full((4,), tok, device=DEVICE)
            braking_step(torch.zeros(4, 16, device=DEVICE), last, state, tables, BrakingConfig())
    rows = BrakingState(state.counters[1:3], state.flags[1:3])
    braking_step(torch.zeros(2, 16, device=DEVICE), None, rows, big, BrakingConfig())
    controller = BrakingController(big, BrakingConfig(), 4, DEVICE)
    for _ in range(3):
        controller.step(torch.zeros(4, 16, device=DEVICE), torch.full((4,), 3, device=DEVICE))
    assert calls == []
    braking_step(torch.zeros(4, 16, device=DEVICE), torch.full((4,), 2, device=DEVICE), state, big,
                 BrakingConfig())  # back to the automaton's root: the state fits the small tables again
    braking_step(torch.zeros(4, 16, device=DEVICE), None, state, small, BrakingConfig())  # carried to smaller
    braking_step(torch.zeros(4, 16, device=DEVICE), None, state, small, BrakingConfig())
    assert len(calls) == 1


def test_malformed_table_contents_are_refused_when_built():
    good = MarkerTables.from_token_ids([[3, 4]], [6], 1, [7, 1], 12)
    fields = {f.name: getattr(good, f.name) for f in dataclasses.fields(good)}
    for name, value, match in [
        ("transitions", 99, "transitions holds 99"),
        ("token_class", -1, "token_class holds -1"),
        ("step_class", 9, "step_class holds 9"),
        ("brake_ids", -2, "brake_ids holds -2"),
    ]:
        bad = dict(fields, **{name: fields[name].clone()})
        bad[name].view(-1)[0] = value
        with pytest.raises(ValueError, match=match):
            MarkerTables(**bad)
    step_table = fields["step_table"].clone()
    step_table[0, 0] = 3
    with pytest.raises(ValueError, match="next delimiter state"):
        MarkerTables(**dict(fields, step_table=step_table))


# --------------------------------------------------------------------------- exact ratio threshold
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ratio", [0.3, torch.tensor([0.3]), torch.tensor([0.3], dtype=torch.float64),
                                   torch.tensor([0.3], dtype=torch.bfloat16)], ids=["number", "fp32", "fp64", "bf16"])
def test_marker_ratio_threshold_is_exact(backend, ratio, monkeypatch):
    """Issue 14 item 7: 6 marker tokens of 20 reach 0.3 (the fp32 threshold 0.30000001 never
    did); 5 of 20 do not, and neither do 6 of 20 reach a threshold just above 0.3."""
    monkeypatch.setenv("MTA_BACKEND", backend)
    tables = MarkerTables.from_token_ids([[4]], [5], 2, [3, 2], vocab_size=8).to(DEVICE)
    if isinstance(ratio, torch.Tensor):
        ratio = ratio.to(DEVICE)

    def braked_at(markers: int, threshold) -> int | None:
        state = BrakingState.new(1, DEVICE)
        cfg = BrakingConfig(marker_ratio=threshold, min_thinking_tokens=20)
        braking_step(torch.zeros(1, 8, device=DEVICE), None, state, tables, cfg)
        for i in range(20):
            tok = 4 if i < markers else 6
            braking_step(torch.zeros(1, 8, device=DEVICE), torch.tensor([tok], device=DEVICE), state, tables, cfg)
            if bool(state.braked[0]):
                return int(state.thinking_tokens[0])
        return None

    assert braked_at(6, ratio) == 20
    assert braked_at(5, ratio) is None
    assert braked_at(6, 0.30000000000000004) is None


def test_config_is_checked_when_built_and_assigned():
    """Issue 14 item 12: a bad trigger fails where it is written, not at the first step."""
    for kwargs, error, match in [
        (dict(max_thinking_tokens="100"), TypeError, "max_thinking_tokens must be an int"),
        (dict(max_thinking_tokens=10**30), ValueError, "max_thinking_tokens must fit in int64"),
        (dict(max_steps=2.5), TypeError, "max_steps must be an int"),
        (dict(max_steps=torch.tensor([1.5, 2.0])), TypeError, "max_steps must be an integer tensor"),
        (dict(marker_ratio=-0.1), ValueError, "marker_ratio must be in"),
        (dict(marker_ratio=float("nan")), ValueError, "marker_ratio must be in"),
        (dict(marker_ratio=torch.tensor([0.2, -1.0])), ValueError, "marker_ratio must be in"),
        (dict(marker_ratio="0.3"), TypeError, "marker_ratio must be a number"),
        (dict(end_think_margin=torch.ones(2, 2)), ValueError, r"end_think_margin must be a scalar or a \[B\] tensor"),
        (dict(min_thinking_tokens=True), TypeError, "min_thinking_tokens must be an int"),
    ]:
        with pytest.raises(error, match=match):
            BrakingConfig(**kwargs)
    cfg = BrakingConfig(max_steps=3)
    with pytest.raises(TypeError, match="max_steps"):
        cfg.max_steps = "4"
    assert cfg.max_steps == 3
