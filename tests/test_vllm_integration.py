"""VllmBrakingLogitsProcessor inside vLLM itself, checked against BrakingLogitsProcessor.

vLLM is not in the project's environment: ``make test-vllm`` installs vLLM 0.33.0 without
its CUDA dependencies into ``.venv-vllm`` (requirements-vllm.txt) and runs these tests
there; elsewhere they are skipped. What they drive is vLLM's own code:

* the frontend's check of per-request arguments (``validate_logits_processors_parameters``,
  loading the class by name), vLLM's factory ``build_logitsprocs``, which builds the
  processor as ``cls(vllm_config, device, is_pin_memory)`` from a real ``VllmConfig``, and
  vLLM's tokenizer loader behind ``build_tables`` (checked against the tables transformers'
  tokenizer gives);
* ``BatchUpdate`` / ``BatchUpdateBuilder`` / ``MoveDirectionality``: the persistent batch's
  slot changes (removed, added, moved, in that order);
* the V1 model runner's persistent batch (``InputBatch``: add_request, remove_request,
  condense, swap_states, refresh_metadata) and the sampler's ``apply_logits_processors``,
  through a run with finishing, preempted-and-resumed, chunked-prefill and reordered
  requests.

The oracle: every request decoded alone by :class:`BrakingLogitsProcessor` in a plain loop
over the same logits gives the same processed logits rows and the same tokens.
(``make test-vllm`` sets VLLM_TARGET_DEVICE=cpu; these tests use CPU tensors.)
"""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import pytest
import torch

if not torch.cuda.is_available():
    # Before vLLM is imported: its CPU platform (an unrecognised one would pin memory).
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

pytest.importorskip("vllm.v1.sample.logits_processor", reason="vLLM is not installed (make test-vllm)")

from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import (
    BatchUpdate,
    BatchUpdateBuilder,
    LogitsProcessor,
    MoveDirectionality,
    validate_logits_processors_parameters,
)

import mta_kernels as mk
from mta_kernels.braking import (
    DEFAULT_BRAKE_TEXT,
    SBT_MARKERS,
    BrakingConfig,
    MarkerTables,
)
from mta_kernels.integrations.transformers import BrakingLogitsProcessor
from mta_kernels.integrations.vllm import BrakingArgsError, VllmBrakingLogitsProcessor

pytestmark = pytest.mark.vllm

V = 48
# Markers "3 4" and "5", step delimiter 6, </think> = 1, brake text 7 8 </think>.
TABLES = MarkerTables.from_token_ids([[3, 4], [5]], [6], 1, [7, 8, 1], V)
FQCN = "mta_kernels.integrations.vllm:VllmBrakingLogitsProcessor"
BACKENDS = [b for b in mk.available_backends("cpu") if b in ("cpp", "reference")]
CPU = torch.device("cpu")


class BrakingWithTestTables(VllmBrakingLogitsProcessor):
    """The documented way to other tables: a subclass overriding build_tables."""

    def build_tables(self, vllm_config):
        return TABLES


class BatchUpdateRecorder(LogitsProcessor):
    """A second custom processor that keeps every batch update vLLM sends."""

    def __init__(self, vllm_config, device, is_pin_memory):
        self.updates: list[BatchUpdate] = []

    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update):
        if batch_update is not None:
            self.updates.append(batch_update)

    def apply(self, logits):
        return logits


def params(args=None) -> SamplingParams:
    return SamplingParams(temperature=0.0, extra_args=None if args is None else {"braking": args})


def step_logits(rid: int, pos: int) -> torch.Tensor:
    """Request ``rid``'s logits before its output token ``pos`` (pos < 0: a prompt chunk)."""
    x = torch.randn(V, generator=torch.Generator().manual_seed(1000 * rid + pos + 500))
    x[2:10] += 3.0  # marker, step and brake-text tokens are likely picks
    return x


def decode_alone(args, rid: int, n: int, prompt_len: int = 3):
    """The oracle: request ``rid`` alone, BrakingLogitsProcessor in a plain greedy loop."""
    proc = None if args is None else BrakingLogitsProcessor(TABLES, BrakingConfig(**args))
    ids = torch.zeros(1, prompt_len, dtype=torch.long)
    rows, tokens = [], []
    for pos in range(n):
        x = step_logits(rid, pos)[None].clone()
        if proc is not None:
            x = proc(ids, x)
        rows.append(x[0])
        tokens.append(int(x[0].argmax()))
        ids = torch.cat([ids, torch.tensor([[tokens[-1]]])], 1)
    return tokens, rows, proc


def consume_alone(args, tokens: list[int], prompt_len: int = 3):
    """BrakingLogitsProcessor after the steps that consumed ``tokens`` (zero logits), and
    its output row for the step that consumes the last of them."""
    proc = BrakingLogitsProcessor(TABLES, BrakingConfig(**args))
    ids = torch.zeros(1, prompt_len, dtype=torch.long)
    row = proc(ids, torch.zeros(1, V))
    for tok in tokens:
        ids = torch.cat([ids, torch.tensor([[tok]])], 1)
        row = proc(ids, torch.zeros(1, V))
    return proc, row[0]


def state_row(proc, slot: int) -> list[int]:
    return [int(t[slot]) for t in proc.state.tensors()]


# --------------------------------------------------------------------------- interface
def test_loaded_by_name_and_validated_by_the_frontend():
    assert issubclass(VllmBrakingLogitsProcessor, LogitsProcessor)
    validate_logits_processors_parameters([FQCN], params({"max_thinking_tokens": 8, "marker_ratio": 0.1}))
    validate_logits_processors_parameters([FQCN], params())  # no braking: nothing to check
    for bad in ({"max_thinking": 8}, {"marker_ratio": -1.0}, {"max_steps": 2.5}, {"max_thinking_tokens": True}, 7):
        with pytest.raises(VLLMValidationError):
            validate_logits_processors_parameters([FQCN], SamplingParams(extra_args={"braking": bad}))
    with pytest.raises(BrakingArgsError) as err:
        VllmBrakingLogitsProcessor.validate_params(params({"bogus": 1}))
    assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


def test_model_runner_v2_refuses_this_interface():
    # vLLM 0.33's Model Runner V2 (its default on a GPU with Triton) has its own processor
    # interface: this class runs under VLLM_USE_V2_MODEL_RUNNER=0, as the module says.
    from vllm.v1.worker.gpu.sample.logits_processor import (
        build_custom_logits_processors_params_validator,
    )

    with pytest.raises(ValueError, match="not a subclass"):
        build_custom_logits_processors_params_validator([VllmBrakingLogitsProcessor])


def test_built_by_vllm_from_a_real_config():
    vllm_config = pytest.importorskip("vllm.config")
    from vllm.v1.sample.logits_processor import build_logitsprocs

    config = vllm_config.VllmConfig(scheduler_config=vllm_config.SchedulerConfig(
        max_num_seqs=5, max_model_len=128, max_num_batched_tokens=512, is_encoder_decoder=False))
    procs = build_logitsprocs(config, CPU, False, False, [BrakingWithTestTables])
    ours = [p for p in procs.all if isinstance(p, BrakingWithTestTables)]
    assert len(ours) == 1 and ours[0] in procs.non_argmax_invariant  # beside vLLM's built-ins
    assert ours[0].capacity == 5 and ours[0].state.batch_size == 5  # max_num_seqs


def test_tables_from_the_served_models_tokenizer(tmp_path):
    # build_tables loads the tokenizer with vLLM's own loader (vllm.tokenizers). A real
    # ModelConfig cannot be built on this CPU install (it inspects the model class, which
    # needs vLLM's compiled kernels), so the config carries the fields the loader reads.
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([DEFAULT_BRAKE_TEXT, *SBT_MARKERS, "So the answer is 18.\n\nLet me check it."],
                            trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<think>", "</think>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    model_config = SimpleNamespace(
        model=str(tmp_path), tokenizer=str(tmp_path), tokenizer_mode="auto", tokenizer_revision=None,
        trust_remote_code=False, runner_type="generate", skip_tokenizer_init=False, hf_config=None,
        get_vocab_size=lambda: len(hf) + 6)  # a padded embedding
    config = SimpleNamespace(model_config=model_config, scheduler_config=SimpleNamespace(max_num_seqs=2))
    got = VllmBrakingLogitsProcessor(config, CPU, False).tables
    want = MarkerTables.from_tokenizer(hf, vocab_size=len(hf) + 6)
    for field in dataclasses.fields(want):
        a, b = getattr(got, field.name), getattr(want, field.name)
        assert torch.equal(a, b) if isinstance(b, torch.Tensor) else a == b, field.name
    assert got.brake_ids[-1] == got.end_think_id == hf.convert_tokens_to_ids("</think>")
    assert got.num_states > 1 and got.token_class.shape == (len(hf) + 6,)


# --------------------------------------------------------------------------- batch updates
def test_batch_update_order_removed_added_moved():
    proc = VllmBrakingLogitsProcessor(None, CPU, False, tables=TABLES, capacity=4)
    out0, out1, out2 = [], [], []
    builder = BatchUpdateBuilder()
    builder.added += [(0, params({"max_thinking_tokens": 0}), [9], out0), (1, params(), [9], out1),
                      (2, params({"max_thinking_tokens": 1}), [9], out2)]
    proc.update_state(builder.get_and_reset(3))
    x = proc.apply(torch.zeros(3, V))
    assert x[0].argmax() == 7 and torch.isinf(x[0]).sum() == V - 1  # budget 0: brakes at once
    assert torch.equal(x[1], torch.zeros(V)) and torch.equal(x[2], torch.zeros(V))
    # Slot 0 is removed and a new request added there in one update (vLLM's note: added
    # requests may replace an index); slot 2 moves one way onto slot 1, replacing it.
    new0 = []
    proc.update_state(BatchUpdate(batch_size=2, removed=[0], added=[(0, params({"max_thinking_tokens": 5}), [9], new0)],
                                  moved=[(2, 1, MoveDirectionality.UNIDIRECTIONAL)]))
    empty = VllmBrakingLogitsProcessor(None, CPU, False, tables=TABLES, capacity=4)
    assert state_row(proc, 2) == state_row(empty, 2)  # a one-way move empties its source
    out2.append(4)
    x = proc.apply(torch.zeros(2, V))
    assert torch.equal(x[0], torch.zeros(V))  # the new request: fresh, thinking, no brake yet
    assert x[1].argmax() == 7 and torch.isinf(x[1]).sum() == V - 1  # the moved one: its budget of 1 is spent
    assert bool(proc.state.in_think[0]) and int(proc.state.thinking_tokens[0]) == 0
    # A swap exchanges the rows (state, triggers and output lists).
    before = [state_row(proc, 0), state_row(proc, 1)]
    proc.update_state(BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)]))
    assert [state_row(proc, 0), state_row(proc, 1)] == before[::-1]
    out2.append(7)
    x = proc.apply(torch.zeros(2, V))
    assert x[0].argmax() == 8 and torch.isinf(x[0]).sum() == V - 1  # next brake-text token
    assert torch.equal(x[1], torch.zeros(V)) and int(proc.state.thinking_tokens[1]) == 0  # new0 did not grow


@pytest.mark.parametrize("backend", BACKENDS)
def test_resumed_and_rewound_requests_are_replayed(backend, monkeypatch):
    monkeypatch.setenv("MTA_BACKEND", backend)
    args = {"max_thinking_tokens": 30, "marker_ratio": 0.4, "min_thinking_tokens": 5, "max_steps": 9}
    tokens = [2, 3, 4, 9, 6, 5, 6, 3, 4, 2, 2, 5]
    proc = VllmBrakingLogitsProcessor(None, CPU, False, tables=TABLES, capacity=3)
    # Resumed after preemption: added with 8 output tokens, then one more step.
    out = tokens[:8]
    builder = BatchUpdateBuilder()
    builder.added.append((1, params(args), [9, 9, 9], out))
    builder.added.append((0, params(), [9], []))
    proc.update_state(builder.get_and_reset(2))
    for n in (8, 9, 10):
        got = proc.apply(torch.zeros(2, V))[1]
        alone, want = consume_alone(args, tokens[:n])
        assert torch.equal(got, want) and state_row(proc, 1) == state_row(alone, 0)
        out.append(tokens[n])
    # Two tokens at once (one step missed), then tokens taken back (a failed KV load).
    out.append(tokens[11])
    got = proc.apply(torch.zeros(2, V))[1]
    alone, want = consume_alone(args, tokens[:12])
    assert torch.equal(got, want) and state_row(proc, 1) == state_row(alone, 0)
    del out[6:]
    got = proc.apply(torch.zeros(2, V))[1]
    alone, want = consume_alone(args, tokens[:6])
    assert torch.equal(got, want) and state_row(proc, 1) == state_row(alone, 0)
    assert int(consume_alone(args, tokens[:8])[0].state.brake_reason[0]) == 2  # the replays cross a brake


# --------------------------------------------------------------------------- the persistent batch
# rid: (braking args or None, output tokens, engine step it arrives at, steps its sample is
# discarded (chunked prefill), engine step it is preempted at, engine step it resumes at).
REQUESTS = {
    0: ({"max_thinking_tokens": 6}, 14, 0, 0, None, None),
    1: (None, 6, 0, 0, None, None),
    2: ({"marker_ratio": 0.3, "min_thinking_tokens": 4, "max_steps": 5}, 16, 0, 2, 9, 11),
    3: ({"end_think_margin": 3.0, "max_thinking_tokens": 40}, 12, 2, 0, None, None),
    4: ({"max_thinking_tokens": 2}, 8, 8, 0, None, None),
}
SWAP_AT = {4: (0, 2), 12: (0, 1)}  # engine step -> slots the batch reorders


@pytest.mark.parametrize("backend", BACKENDS)
def test_v1_persistent_batch_matches_each_request_alone(backend, monkeypatch):
    gib = pytest.importorskip("vllm.v1.worker.gpu_input_batch")
    from vllm.config import SchedulerConfig, VllmConfig
    from vllm.v1.sample.logits_processor import build_logitsprocs
    from vllm.v1.sample.sampler import Sampler

    monkeypatch.setenv("MTA_BACKEND", backend)
    config = VllmConfig(scheduler_config=SchedulerConfig(max_num_seqs=4, max_model_len=128, max_num_batched_tokens=512,
                                                         is_encoder_decoder=False))
    procs = build_logitsprocs(config, CPU, False, False, [BrakingWithTestTables, BatchUpdateRecorder])
    recorder = next(p for p in procs.all if isinstance(p, BatchUpdateRecorder))
    batch = gib.InputBatch(max_num_reqs=4, max_model_len=128, max_num_batched_tokens=512, device=CPU, vocab_size=V,
                           block_sizes=[16], max_num_blocks_per_req=[8], logitsprocs=procs,
                           logitsprocs_need_output_token_ids=True)
    sampler = Sampler()
    states = {rid: gib.CachedRequestState(
        req_id=f"r{rid}", prompt_token_ids=[9, 9, 9], mm_features=[], sampling_params=params(args), generator=None,
        block_ids=([rid],), num_computed_tokens=0, output_token_ids=[]) for rid, (args, *_) in REQUESTS.items()}
    rows = {rid: [] for rid in REQUESTS}
    discard = {rid: spec[3] for rid, spec in REQUESTS.items()}
    finished: list[str] = []
    for step in range(40):
        # The model runner's _update_states: finished and preempted requests leave, new and
        # resumed ones join, the batch is condensed, maybe reordered, then refreshed.
        for req_id in finished:
            batch.remove_request(req_id)
        finished = []
        for rid, (_, _, arrive, _, preempt, resume) in REQUESTS.items():
            if step == preempt:
                batch.remove_request(f"r{rid}")
        for rid, (_, _, arrive, _, preempt, resume) in REQUESTS.items():
            if step in (arrive, resume):
                batch.add_request(states[rid])
        batch.condense()
        if step in SWAP_AT and batch.num_reqs > max(SWAP_AT[step]):
            batch.swap_states(*SWAP_AT[step])
        batch.refresh_metadata()
        if batch.num_reqs == 0:
            break
        rids = [int(r[1:]) for r in batch.req_ids]
        logits = torch.stack([step_logits(rid, -1 - discard[rid] if discard[rid] else len(states[rid].output_token_ids))
                              for rid in rids])
        logits = sampler.apply_logits_processors(logits, batch.sampling_metadata, predict_bonus_token=False)
        for slot, rid in enumerate(rids):
            if discard[rid]:  # a prompt chunk: vLLM samples, then drops the token
                discard[rid] -= 1
                continue
            rows[rid].append(logits[slot].clone())
            states[rid].output_token_ids.append(int(logits[slot].argmax()))
            if len(states[rid].output_token_ids) == REQUESTS[rid][1]:
                finished.append(f"r{rid}")
    assert batch.num_reqs == 0

    reasons = set()
    for rid, (args, n, *_) in REQUESTS.items():
        tokens, want_rows, alone = decode_alone(args, rid, n)
        assert states[rid].output_token_ids == tokens, f"request {rid}"
        for pos, (got, want) in enumerate(zip(rows[rid], want_rows)):
            assert torch.equal(got, want), f"request {rid}, output token {pos}"
        if alone is not None:
            reasons.add(int(alone.state.brake_reason[0]))
    assert reasons == {1, 2, 4}  # the budget, marker-ratio and margin triggers all fired
    # The run drove every kind of batch change vLLM sends.
    kinds = {d for u in recorder.updates for *_, d in u.moved}
    assert kinds == {MoveDirectionality.SWAP, MoveDirectionality.UNIDIRECTIONAL}
    assert any(u.removed for u in recorder.updates)
    assert any(out for u in recorder.updates for *_, out in u.added)  # a resumed request's tokens
