"""Triton kernels for mix_logits and mix_and_sample: each model's logits read once per pass.

Rows are cut into chunks (``triton_split_row.CHUNK`` tokens), grid (B, chunks), at every
batch size: a one-program-per-row kernel would read the K models' logits again in each of
its passes.

* ``_model_stats_kernel`` (only when needed): per model and chunk, the max of the cleaned
  logits ``x_k`` and the mass ``Σ exp((x_k - chunk max) / T_k)``. ``mix_logits`` needs them
  for every model when ``normalize`` (the log-softmax normalisers, written without dividing
  a logit by a tiny ``T_k``), plausibility needs model 0's max.
* ``_mix_chunk_kernel``: reduces those to per-row values (a few dozen floats), reads the
  chunk of every model once, and writes the mixture ``s``. For ``mix_and_sample`` the same
  program then summarises its chunk of ``s`` for the sampler exactly as the split-row
  sampler's chunk kernel does (``triton_split_row.summarise_chunk``: max, mass, top-k or
  probe candidates), re-reading only the chunk it has just written (on chip / in L2), and
  the split-row merge (``triton_split_row.merge_and_sample``) finishes each row: cuts and
  the inverse-CDF draw on candidates, or on the full row of ``s`` where candidates cannot
  serve it.

``mix_and_sample`` skips the log-softmax normalisers: they shift a row by one constant.
It samples ``s' = Σ_k w_k (T_min / T_k) x_k`` at the row's smallest temperature ``T_min``
(``reference.factored_mixture``): no logit is divided by a tiny temperature. So it reads K tensors once (plus model 0's once more with plausibility) and writes and
re-reads one fp32 row of ``s``; the K x [B, V] per-model scores are never stored.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mta_kernels.mixing.inputs import MixInputs
from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_primitives import BLOCK, load_row_params

__all__ = ["mix_and_sample_triton", "mix_logits_triton"]

_FP32_MAX = tl.constexpr(3.4028234663852886e38)
_FP32_TINY = tl.constexpr(1.1754943508222875e-38)


@triton.jit
def _clean(x):
    """A logit as the mixture reads it (reference.py's ``clean_logits``): fp32, NaN -> -inf,
    +inf -> the fp32 max."""
    x = x.to(tl.float32)
    return tl.minimum(tl.where(x != x, float("-inf"), x), _FP32_MAX)


@triton.jit
def _scaled(x, t):
    """z = x / t in fp32 (reference.py's rules): NaN -> -inf, +inf and overflow saturate."""
    x = _clean(x)
    z = tl.minimum(tl.maximum(x / t, -_FP32_MAX), _FP32_MAX)
    return tl.where(x == float("-inf"), float("-inf"), z) + 0.0


@triton.jit
def _pick(k: tl.constexpr, x0, x1, x2, x3, x4, x5, x6, x7):
    """The k-th of eight arguments (k is a compile-time constant)."""
    if k == 0:
        v = x0
    elif k == 1:
        v = x1
    elif k == 2:
        v = x2
    elif k == 3:
        v = x3
    elif k == 4:
        v = x4
    elif k == 5:
        v = x5
    elif k == 6:
        v = x6
    else:
        v = x7
    return v


@triton.jit
def _model_stats_kernel(
    x0, x1, x2, x3, x4, x5, x6, x7, s0, s1, s2, s3, s4, s5, s6, s7, temp_ptr, stats_ptr,
    B, V, CHUNK_LEN, K_STATS: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = split_row.program_chunk(V, CHUNK_LEN)
    offs0 = tl.arange(0, BLOCK)
    for k in tl.static_range(K_STATS):
        ptr = _pick(k, x0, x1, x2, x3, x4, x5, x6, x7)
        stride = _pick(k, s0, s1, s2, s3, s4, s5, s6, s7)
        row_ptr = ptr + row.to(tl.int64) * stride + first
        t = tl.load(temp_ptr + k * B + row)
        m = float("-inf")
        mass = 0.0
        for start in range(0, n, BLOCK):
            offs = start + offs0
            x = _clean(tl.load(row_ptr + offs, mask=offs < n, other=float("-inf")))
            tile_m = tl.max(x, axis=0)
            new_m = tl.maximum(m, tile_m)
            # Online softmax mass of x / t, each exponent (x - max) / t <= 0; exp(-inf - -inf)
            # is guarded by the max weighing 1.
            mass = mass * _scaled_weight(m, new_m, t) + tl.sum(
                tl.where(x > float("-inf"), _scaled_weight(x, new_m, t), 0.0), axis=0
            )
            m = new_m
        base = (k * B + row) * n_chunks + chunk
        tl.store(stats_ptr + base, m)
        tl.store(stats_ptr + K_STATS * B * n_chunks + base, mass)


@triton.jit
def _scaled_weight(x, m, t):
    """``exp((x - m) / t)`` for ``x <= m``, the max weighing exactly 1."""
    return tl.where(x == m, 1.0, tl.exp((x - m) / t))


@triton.jit
def _row_stats(stats_ptr, k: tl.constexpr, row, t, B, n_chunks, K_STATS: tl.constexpr, CHUNKS_BLOCK: tl.constexpr):
    """Model k's row max of the cleaned logits and the log of its softmax mass at
    temperature ``t`` relative to that max, ``log Σ exp((x - max) / t)``."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    base = (k * B + row) * n_chunks
    chunk_max = tl.load(stats_ptr + base + chunks, mask=inside, other=float("-inf"))
    chunk_mass = tl.load(stats_ptr + K_STATS * B * n_chunks + base + chunks, mask=inside, other=0.0)
    m = tl.max(chunk_max, axis=0)
    mass = tl.sum(tl.where(chunk_max > float("-inf"), chunk_mass * _scaled_weight(chunk_max, m, t), 0.0), axis=0)
    return m, tl.log(mass)


@triton.jit
def _mix_chunk_kernel(
    x0, x1, x2, x3, x4, x5, x6, x7, s0, s1, s2, s3, s4, s5, s6, s7,
    w_ptr, temp_ptr, t_min_ptr, alpha_ptr, stats_ptr, out_ptr, ws_f, ws_i, top_k_ptr, top_p_ptr, min_p_ptr,
    B, V, CHUNK_LEN,
    K: tl.constexpr, K_STATS: tl.constexpr, NORMALIZE: tl.constexpr, PLAUSIBILITY: tl.constexpr,
    SUMMARISE: tl.constexpr, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr,
    CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = split_row.program_chunk(V, CHUNK_LEN)
    out_chunk = out_ptr + row.to(tl.int64) * V + first
    x0_min = float("-inf")
    if PLAUSIBILITY:
        # x_0 / T_0 >= max / T_0 + log(alpha), written as x_0 >= max + T_0 log(alpha).
        alpha = tl.minimum(tl.load(alpha_ptr + row), 1.0)
        t0 = tl.load(temp_ptr + row)
        m0, _ = _row_stats(stats_ptr, 0, row, t0, B, n_chunks, K_STATS, CHUNKS_BLOCK)
        x0_min = tl.where(alpha > 0.0, m0 + t0 * tl.log(tl.maximum(alpha, _FP32_TINY)), float("-inf"))
    t_min = 1.0
    if SUMMARISE:
        t_min = tl.load(t_min_ptr + row)
    offs0 = tl.arange(0, BLOCK)
    for start in range(0, n, BLOCK):
        offs = start + offs0
        inside = offs < n
        s = tl.zeros((BLOCK,), tl.float32)
        keep = inside
        for k in tl.static_range(K):
            ptr = _pick(k, x0, x1, x2, x3, x4, x5, x6, x7)
            stride = _pick(k, s0, s1, s2, s3, s4, s5, s6, s7)
            t = tl.load(temp_ptr + k * B + row)
            w = tl.load(w_ptr + k * B + row)
            x = _clean(tl.load(ptr + row.to(tl.int64) * stride + first + offs, mask=inside, other=float("-inf")))
            if k == 0:
                keep = keep & (x >= x0_min)
            if SUMMARISE:  # mix_and_sample: the factored scores s' (no division by T_k)
                f = (t_min / t) * x
            elif NORMALIZE:
                m, log_mass = _row_stats(stats_ptr, k, row, t, B, n_chunks, K_STATS, CHUNKS_BLOCK)
                f = tl.where(x > float("-inf"), (x - m) / t - log_mass, float("-inf"))
            else:
                f = _scaled(x, t)
            s += tl.where(w == 0.0, 0.0, w * f)
        s = tl.where((s != s) | ~keep, float("-inf"), s)
        tl.store(out_chunk + offs, s, mask=inside)
    if SUMMARISE:
        # Every thread's stores of this chunk of s are visible to the whole program after it.
        tl.debug_barrier()
        greedy, t_row, top_k, top_p, min_p = load_row_params(row, t_min_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
        split_row.summarise_chunk(
            out_chunk, n, first, row, chunk, n_chunks, ws_f, ws_i, B, V, greedy, t_row, top_k, top_p, min_p,
            K_MAX, PROBE, TIE_SLACK, BLOCK,
        )


def _model_args(inputs: MixInputs) -> list:
    """Eight pointers and eight row strides (the unused ones repeat model 0)."""
    models = inputs.logits + [inputs.logits[0]] * (8 - len(inputs.logits))
    return [*models, *(x.stride(0) for x in models)]


def _stats(inputs: MixInputs, k_stats: int, chunk: int, block: int) -> torch.Tensor:
    B, V = inputs.logits[0].shape
    n_chunks = triton.cdiv(V, chunk)
    stats = torch.empty((2, max(k_stats, 1), B, n_chunks), dtype=torch.float32, device=inputs.device)
    if k_stats:
        _model_stats_kernel[(B, n_chunks)](
            *_model_args(inputs), inputs.temperature, stats, B, V, chunk, K_STATS=k_stats, BLOCK=block, num_warps=8
        )
    return stats


def _launch_mix(
    inputs: MixInputs, out, *, normalize, chunk, block, ws: split_row.Workspace | None = None, sampling=None,
    t_min=None,
):
    """Write the mixture into ``out``; with a workspace, write ``mix_and_sample``'s factored
    scores ``s'`` instead and summarise each chunk of them for the split-row merge, with the
    ``sampling`` rows (top_k, top_p, min_p) at the temperatures ``t_min`` [B]."""
    B, V = inputs.logits[0].shape
    n_chunks = triton.cdiv(V, chunk)
    k_stats = len(inputs.logits) if normalize else int(inputs.uses_plausibility)
    stats = _stats(inputs, k_stats, chunk, block)
    summarise = ws is not None
    ws_i, ws_f = (ws.ints, ws.floats) if summarise else (out, out)
    k_max, tie_slack = (ws.k_max, ws.tie_slack) if summarise else (split_row.K_MAX, split_row.TIE_SLACK)
    top_k, top_p, min_p = sampling if summarise else (inputs.plausibility,) * 3
    _mix_chunk_kernel[(B, n_chunks)](
        *_model_args(inputs), inputs.weights, inputs.temperature, t_min if summarise else inputs.plausibility,
        inputs.plausibility, stats, out, ws_f, ws_i,
        top_k, top_p, min_p, B, V, chunk,
        K=len(inputs.logits), K_STATS=max(k_stats, 1), NORMALIZE=normalize, PLAUSIBILITY=inputs.uses_plausibility,
        SUMMARISE=summarise, K_MAX=k_max, PROBE=split_row.PROBE, TIE_SLACK=tie_slack,
        CHUNKS_BLOCK=triton.next_power_of_2(n_chunks), BLOCK=block, num_warps=8,
    )


def mix_logits_triton(inputs: MixInputs, *, chunk: int | None = None, block: int = BLOCK) -> torch.Tensor:
    """The mixture [B, V] fp32 (reference.py's ``mix_logits_reference``) for B >= 1."""
    chunk = chunk or split_row.CHUNK
    B, V = inputs.logits[0].shape
    out = torch.empty((B, V), dtype=torch.float32, device=inputs.device)
    _launch_mix(inputs, out, normalize=inputs.normalize, chunk=chunk, block=min(block, triton.next_power_of_2(chunk)))
    return out


def candidate_room(top_k_hint: int | None) -> int:
    """Candidates per chunk to make room for: a known small top-k needs less than ``K_MAX``
    (rows whose k does not fit take the full-row path, still exact)."""
    if top_k_hint is None or top_k_hint <= 0 or top_k_hint > split_row.K_MAX:
        return split_row.K_MAX
    return max(split_row.PROBE, triton.next_power_of_2(top_k_hint))


def run_mix_and_sample_triton(
    inputs: MixInputs, top_k, top_p, min_p, uniform, *, top_k_hint=None, chunk=None, block=BLOCK
):
    """:func:`mix_and_sample_triton` that also returns the mixture and the split-row
    :class:`~mta_kernels.sampling.triton_split_row.Workspace` (for tests)."""
    chunk = chunk or split_row.CHUNK
    B, V = inputs.logits[0].shape
    mixed = torch.empty((B, V), dtype=torch.float32, device=inputs.device)
    ws = split_row.workspace(B, V, chunk, inputs.device, candidate_room(top_k_hint))
    t_min = inputs.temperature.amin(dim=0)  # s' is sampled at the row's smallest temperature
    _launch_mix(
        inputs, mixed, normalize=False, chunk=chunk, block=min(block, triton.next_power_of_2(chunk)),
        ws=ws, sampling=(top_k, top_p, min_p), t_min=t_min,
    )
    tokens, logprobs = split_row.merge_and_sample(
        mixed, ws, uniform, t_min, top_k, top_p, min_p, chunk=chunk, block=block
    )
    return tokens, logprobs, mixed, ws


def mix_and_sample_triton(inputs: MixInputs, top_k, top_p, min_p, uniform, top_k_hint=None):
    """Tokens [B] int64 and logprobs [B] fp32 for B >= 1; ``top_k_hint``: the top-k when
    the caller passed one number for every row (sizes the candidate buffers)."""
    tokens, logprobs, *_ = run_mix_and_sample_triton(inputs, top_k, top_p, min_p, uniform, top_k_hint=top_k_hint)
    return tokens, logprobs
