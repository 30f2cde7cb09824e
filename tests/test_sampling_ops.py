"""The C++ sampling ops trace under torch.compile (their opcheck is in test_opcheck.py)."""

import pytest
import torch

import mta_kernels as mk
from sampling_cases import make_logits, per_row_params

pytestmark = pytest.mark.skipif(not mk.extension_loaded(), reason=f"extension not built: {mk.extension_error()}")


def _args(B=4, V=64):
    logits = make_logits(B, V, "normal1", seed=0)
    return logits, per_row_params(B, V, seed=0)


def test_sample_traces_under_torch_compile(force_backend):
    force_backend("cpp")
    logits, params = _args()

    def step(x):
        return mk.sample(x * 2.0, 0.7, 5, 0.9, generator=None, return_logprobs=True)

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    tokens, logprobs = compiled(logits)
    assert tokens.shape == (4,) and logprobs.dtype == torch.float32
    assert torch.isfinite(mk.filter_logits(logits * 2.0, 0.7, 5, 0.9).gather(1, tokens[:, None])).all()
