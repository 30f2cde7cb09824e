"""mk.wsd_switch_point equals a brute-force loop over every candidate window."""

import math

import pytest
import torch

import mta_kernels as mk
from conftest import DEVICE


def brute_force(token_logprobs, lengths, window, gamma):
    out = []
    for row, length in zip(token_logprobs.double().tolist(), lengths.tolist()):
        switch = length
        for i in range(window, length + 1):
            if math.exp(sum(row[i - window:i]) / window) >= gamma:
                switch = i
                break
        out.append(switch)
    return torch.tensor(out, dtype=torch.int64)


@pytest.mark.parametrize("window,gamma", [(6, 0.8), (1, 0.5), (3, 0.95), (6, 1.5)])
def test_equals_brute_force(window, gamma):
    g = torch.Generator().manual_seed(window)
    B, T = 64, 40
    # Confident stretches (p ~ 0.9) among unsure ones, so windows cross gamma at many places.
    probs = torch.where(torch.rand(B, T, generator=g) < 0.7, 0.85 + 0.15 * torch.rand(B, T, generator=g), torch.rand(B, T, generator=g))
    token_logprobs = torch.log(probs)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[:4] = torch.tensor([0, window - 1, window, T]).clamp(0, T)  # shorter than, equal to the window
    got = mk.wsd_switch_point(token_logprobs.to(DEVICE), lengths.to(DEVICE), window=window, gamma=gamma)
    assert got.dtype == torch.int64
    assert torch.equal(got.cpu(), brute_force(token_logprobs, lengths, window, gamma))


def test_cases_by_hand():
    confident, unsure = math.log(0.95), math.log(0.3)
    lp = torch.tensor([
        [confident] * 8,  # the first window reaches gamma
        [unsure] * 8,  # no window does: keep the whole draft
        [unsure] * 3 + [confident] * 5,  # reached once the window leaves the unsure tokens
        [confident] * 8,  # shorter than the window
    ], device=DEVICE)
    lengths = torch.tensor([8, 8, 8, 4], device=DEVICE)
    assert mk.wsd_switch_point(lp, lengths, window=4, gamma=0.8).tolist() == [4, 8, 7, 4]
    # Entries past a row's length are ignored, even NaN.
    lp[0, 2:] = float("nan")
    assert mk.wsd_switch_point(lp, torch.tensor([2, 8, 8, 4], device=DEVICE), window=2, gamma=0.9).tolist() == [2, 8, 5, 2]


def test_bf16_input_and_empty_batch():
    lp = torch.log(torch.tensor([[0.5, 0.9, 0.9, 0.9]], device=DEVICE)).bfloat16()
    assert mk.wsd_switch_point(lp, torch.tensor([4], device=DEVICE), window=2, gamma=0.85).tolist() == [3]
    empty = mk.wsd_switch_point(torch.empty(0, 5, device=DEVICE), torch.empty(0, dtype=torch.int64, device=DEVICE))
    assert empty.shape == (0,)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(token_logprobs=torch.zeros(2, 3, 4)), ValueError, r"token_logprobs must have shape \[B, T\]"),
        (dict(lengths=[3, 3]), TypeError, "lengths must be a"),
        (dict(lengths=torch.tensor([3])), ValueError, "lengths must have shape"),
        (dict(lengths=torch.tensor([3.0, 3.0])), TypeError, "lengths must be an integer"),
        (dict(lengths=torch.tensor([3, 9])), ValueError, r"lengths must be in \[0, T=8\]"),
        (dict(lengths=torch.tensor([-1, 3])), ValueError, "lengths must be in"),
        (dict(window=0), ValueError, "window must be an int >= 1"),
        (dict(window=2.0), ValueError, "window must be an int"),
        (dict(gamma=0.0), ValueError, "gamma must be a finite number > 0"),
        (dict(gamma=float("nan")), ValueError, "gamma must be"),
    ],
)
def test_bad_inputs(kwargs, error, match):
    args = dict(token_logprobs=torch.zeros(2, 8), lengths=torch.tensor([3, 8]), window=2, gamma=0.8) | kwargs
    with pytest.raises(error, match=match):
        mk.wsd_switch_point(**args)
