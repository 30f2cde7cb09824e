"""Bad input gets a clear error naming the argument; documented edge behaviour holds."""

import os
import subprocess
import sys

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE

OPS = [mk.filter_logits, mk.sample]


def logits_2x5(dtype=torch.float32):
    return torch.randn(2, 5, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "logits,match",
    [
        ([[1.0, 2.0]], "logits must be a torch.Tensor"),
        (torch.randn(5), r"logits must have shape \[B, V\]"),
        (torch.randn(2, 3, 4), r"logits must have shape \[B, V\]"),
        (torch.randint(0, 5, (2, 5)), "logits must be float32, bfloat16 or float16"),
        (torch.randn(2, 5, dtype=torch.float64), "logits must be float32"),
        (torch.randn(2, 0), "logits has an empty vocabulary"),
    ],
)
def test_bad_logits(op, logits, match):
    with pytest.raises((TypeError, ValueError), match=match):
        op(logits)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": -0.1}, "temperature must be in"),
        ({"temperature": float("nan")}, "temperature must be in"),
        ({"temperature": float("inf")}, "temperature must be in"),
        ({"top_p": 0.0}, r"top_p must be in \(0"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"min_p": -0.5}, "min_p must be in"),
        ({"min_p": 2.0}, "min_p must be in"),
        ({"top_k": 2.5}, "top_k must be an integer"),
        ({"top_k": "5"}, "top_k must be a number"),
        ({"temperature": True}, "temperature must be a number"),
        ({"temperature": torch.ones(3)}, r"temperature must be a scalar or a \[B\] tensor with B=2"),
        ({"top_p": torch.ones(2, 1)}, r"top_p must be a scalar or a \[B\] tensor"),
        ({"top_k": torch.ones(2)}, "top_k must be an integer tensor"),
        ({"top_p": torch.tensor([0.5, 0.0])}, "top_p must be in"),
        ({"temperature": torch.tensor([1.0, -1.0])}, "temperature must be in"),
        ({"min_p": torch.tensor([0.1, float("nan")])}, "min_p must be in"),
        ({"temperature": torch.ones(2, device="meta")}, "temperature is on meta but logits are on"),
        ({"top_k": 10**30}, "top_k must fit in int64"),  # was an OverflowError (issue 14)
        ({"top_k": -(10**30)}, "top_k must fit in int64"),
        ({"temperature": 10**400}, "temperature must be in"),  # float() of it overflowed
        ({"top_k": [5, 5]}, "top_k must be a number or a"),
    ],
)
def test_bad_parameters(op, kwargs, match):
    kwargs = {k: v.to(DEVICE) if isinstance(v, torch.Tensor) and v.device.type != "meta" else v for k, v in kwargs.items()}
    with pytest.raises((TypeError, ValueError), match=match):
        op(logits_2x5(), **kwargs)


@pytest.mark.parametrize("generator", [5, "seed", torch.Generator().get_state(), object()])
def test_generator_of_the_wrong_type_is_a_type_error(generator):
    """Issue 14 item 12: a non-Generator raised AttributeError ('int' object has no attribute 'device')."""
    for call in (lambda: mk.sample(logits_2x5(), generator=generator),
                 lambda: mk.mix_and_sample([logits_2x5()], [1.0], generator=generator)):
        with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got"):
            call()


def test_temperatures_past_the_fp32_range_saturate():
    """A finite temperature past the fp32 range (1e300) is as flat as the largest fp32 one,
    not a RuntimeError from the fp32 fill; one below it (1e-300) is greedy, as 0 is."""
    logits = logits_2x5()
    flat = mk.filter_logits(logits, 1e300)
    assert torch.isfinite(flat).all() and flat.abs().max() < 1e-30
    assert torch.equal(mk.sample(logits, 1e-300), logits.argmax(dim=1))
    weights = mk.mix_logits([logits], [1e300], normalize=False)
    assert not weights.isnan().any()


def test_generator_on_another_device():
    other = "cpu" if DEVICE == "cuda" else "meta"
    if other == "meta":
        pytest.skip("a second device is needed; torch.Generator has no meta device")
    with pytest.raises(ValueError, match="generator is on"):
        mk.sample(logits_2x5(), generator=torch.Generator(other))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_empty_batch(dtype):
    logits = torch.empty(0, 7, dtype=dtype, device=DEVICE)
    assert mk.filter_logits(logits, 0.7, 3, 0.9).shape == (0, 7)
    tokens, logprobs = mk.sample(logits, 0.7, 3, 0.9, return_logprobs=True)
    assert tokens.shape == (0,) and tokens.dtype == torch.int64 and logprobs.dtype == torch.float32
    assert mk.sample(logits, torch.empty(0, device=DEVICE)).shape == (0,)


def test_rows_without_finite_logits_return_minus_one():
    logits = logits_2x5()
    logits[1] = float("nan")
    tokens, logprobs = mk.sample(logits, return_logprobs=True)
    assert tokens[1] == -1 and logprobs[1] == float("-inf") and tokens[0] >= 0
    assert torch.isneginf(mk.filter_logits(logits)[1]).all()


def test_non_contiguous_logits():
    logits = torch.randn(5, 4, device=DEVICE).t()
    assert torch.equal(mk.filter_logits(logits, top_k=2), mk.filter_logits(logits.contiguous(), top_k=2))


def test_forced_backend_that_cannot_run_raises(force_backend):
    force_backend("cuda" if DEVICE == "cpu" else "cpp")
    with pytest.raises(RuntimeError, match="MTA_BACKEND="):
        mk.sample(logits_2x5())
    force_backend("fastest")
    with pytest.raises(ValueError, match="MTA_BACKEND='fastest' is not one of"):
        mk.sample(logits_2x5())


def test_imports_and_works_without_extension():
    code = (
        "import warnings, torch, mta_kernels as mk\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    t = mk.sample(torch.randn(3, 10), top_k=2)\n"
        "assert t.shape == (3,) and not mk.extension_loaded()\n"
        "print([str(x.message) for x in w])\n"
    )
    env = dict(os.environ, MTA_DISABLE_EXTENSION="1")
    env.pop("MTA_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "C++ extension unavailable, using the torch reference" in out


def test_checked_parameter_tensors_are_rechecked_after_in_place_changes():
    from mta_kernels import _validation

    t = torch.full((3,), 0.5)
    _validation._remember_checked(t)
    assert _validation._already_checked(t)
    t.mul_(4.0)  # now out of range for top_p: the version bump forces a new check
    assert not _validation._already_checked(t)
    assert not _validation._already_checked(torch.full((3,), 0.5))


@pytest.mark.skipif(DEVICE != "cuda", reason="the checked-tensor cache is used for GPU tensors only")
def test_gpu_parameter_tensor_modified_in_place_is_caught():
    top_p = torch.full((2,), 0.5, device=DEVICE)
    mk.sample(logits_2x5(), top_p=top_p)
    top_p.fill_(2.0)
    with pytest.raises(ValueError, match="top_p must be in"):
        mk.sample(logits_2x5(), top_p=top_p)
