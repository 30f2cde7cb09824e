"""The decode step on a GPU: captured in a CUDA graph, and compiled, equal to eager.

A decode loop is only as fast as its launches: `mta.generate(compile=True)` runs the step
as a CUDA graph, so every op on that path must be capturable (no host sync, no allocation
that changes between replays). These tests need a GPU; on a CPU machine they are skipped
(tools/gpu_session.sh runs them on the H100/H200).
"""

import pytest
import torch

import mta
import mta_kernels as mk
from mta.models import tiny_random_model
from mta_kernels.braking import BrakingConfig, MarkerTables

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: CUDA graph capture")


def _capture(fn):
    """``fn`` captured in a CUDA graph after a warm-up on a side stream (as torch.cuda.graphs does)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


@pytest.mark.parametrize("B,V", [(1, 151936), (64, 151936), (256, 32000)])
def test_greedy_sampler_and_braking_step_replay_equal_eager(B, V):
    """The fused sampler (greedy, so the draw is deterministic) and the braking controller,
    captured once and replayed on new logits, give what eager calls give."""
    tables = MarkerTables.from_token_ids([[5, 6], [7]], [8], 2, [3, 2], vocab_size=V).to("cuda")
    cfg = BrakingConfig(max_thinking_tokens=3)
    static_logits = torch.empty(B, V, device="cuda")
    static_last = torch.full((B,), -1, dtype=torch.int64, device="cuda")
    sampler = mk.Sampler(B, "cuda", temperature=0.0)
    controller = mk.BrakingController(tables, cfg, B, "cuda")
    eager_controller = mk.BrakingController(tables, cfg, B, "cuda")

    def step():
        controller.step(static_logits, static_last)
        return sampler(static_logits)

    static_logits.normal_()
    graph, (tokens, logprobs) = _capture(step)
    # The warm-up consumed nothing (last = -1) and fired no trigger; the capture only records.
    g = torch.Generator("cuda").manual_seed(0)
    last = torch.full((B,), -1, dtype=torch.int64, device="cuda")
    for _ in range(5):
        logits = torch.randn(B, V, device="cuda", generator=g)
        static_logits.copy_(logits)
        static_last.copy_(last)
        graph.replay()
        eager_logits = eager_controller.step(logits.clone(), last)
        want = eager_logits.argmax(-1)
        torch.testing.assert_close(tokens, want)
        torch.testing.assert_close(controller.state.counters, eager_controller.state.counters)
        last = want


def test_seeded_sampler_replays_a_new_draw_each_time():
    """Sampling from the default CUDA generator inside a graph: replays advance the RNG
    (each replay a new draw) and every token is inside the kept set."""
    B, V = 32, 4096
    sampler = mk.Sampler(B, "cuda", temperature=0.8, top_k=20)
    static_logits = torch.randn(B, V, device="cuda")
    graph, (tokens, _) = _capture(lambda: sampler(static_logits))
    seen = []
    for _ in range(4):
        graph.replay()
        kept = mk.filter_logits(static_logits, 0.8, 20).isfinite()
        assert kept.gather(1, tokens[:, None]).all()
        seen.append(tokens.clone())
    assert any(not torch.equal(seen[0], s) for s in seen[1:])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_generate_compiled_greedy_equals_eager(arch):
    """mta.generate(compile=True) (static cache, CUDA graphs) decodes the same greedy tokens
    as the eager loop."""
    model = tiny_random_model(arch, vocab_size=4096, device="cuda")
    prompts = [[5, 9, 11, 3], [7, 7], [1, 2, 3, 4, 5, 6, 7]]
    kw = dict(max_new_tokens=24, temperature=0.0, eos_token_id=[], progress=False)
    eager = mta.generate(model, None, prompts, cache="static", **kw)
    compiled = mta.generate(model, None, prompts, compile=True, **kw)
    assert compiled.extras["compiled"] and compiled.extras["cache"] == "static"
    assert compiled.token_ids == eager.token_ids
