"""Triton kernels for mix_logits and mix_and_sample: each model's logits read once per pass.

Rows are cut into chunks (``triton_split_row.CHUNK`` tokens), grid (B, chunks), at every
batch size: a one-program-per-row kernel would read the K models' logits again in each of
its passes.

* ``_model_stats_kernel`` (only when needed): per model and chunk, the max of ``z_k`` and
  the mass ``Σ exp(z_k - chunk max)``. ``mix_logits`` needs them for every model when
  ``normalize`` (the log-softmax normalisers), plausibility needs model 0's max.
* ``_mix_chunk_kernel``: reduces those to per-row values (a few dozen floats), reads the
  chunk of every model once, and writes the mixture ``s``. For ``mix_and_sample`` the same
  program then summarises its chunk of ``s`` for the sampler exactly as the split-row
  sampler's chunk kernel does (``triton_split_row.summarise_chunk``: max, mass, top-k or
  probe candidates), re-reading only the chunk it has just written (on chip / in L2), and
  the split-row merge (``triton_split_row.merge_and_sample``) finishes each row: cuts and
  the inverse-CDF draw on candidates, or on the full row of ``s`` where candidates cannot
  serve it.

``mix_and_sample`` skips the log-softmax normalisers: they shift a row by one constant.
So it reads K tensors once (plus model 0's once more with plausibility) and writes and
re-reads one fp32 row of ``s``; the K x [B, V] per-model scores are never stored.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from mta_kernels._validation import filled
from mta_kernels.mixing.inputs import MixInputs
from mta_kernels.sampling import triton_split_row as split_row
from mta_kernels.sampling.triton_primitives import BLOCK, load_row_params, weight

__all__ = ["mix_and_sample_triton", "mix_logits_triton"]

_FP32_MAX = tl.constexpr(3.4028234663852886e38)
_FP32_TINY = tl.constexpr(1.1754943508222875e-38)


@triton.jit
def _scaled(x, t):
    """z = x / t in fp32 (reference.py's rules): NaN -> -inf, +inf and overflow saturate."""
    x = x.to(tl.float32)
    x = tl.where(x != x, float("-inf"), x)
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
            z = _scaled(tl.load(row_ptr + offs, mask=offs < n, other=float("-inf")), t)
            tile_m = tl.max(z, axis=0)
            new_m = tl.maximum(m, tile_m)
            # Online softmax mass; exp(-inf - -inf) is guarded by the max weighing 1.
            mass = mass * weight(m, new_m) + tl.sum(tl.where(z > float("-inf"), weight(z, new_m), 0.0), axis=0)
            m = new_m
        base = (k * B + row) * n_chunks + chunk
        tl.store(stats_ptr + base, m)
        tl.store(stats_ptr + K_STATS * B * n_chunks + base, mass)


@triton.jit
def _row_stats(stats_ptr, k: tl.constexpr, row, B, n_chunks, K_STATS: tl.constexpr, CHUNKS_BLOCK: tl.constexpr):
    """Model k's row max of z and log of its softmax mass relative to that max."""
    chunks = tl.arange(0, CHUNKS_BLOCK)
    inside = chunks < n_chunks
    base = (k * B + row) * n_chunks
    chunk_max = tl.load(stats_ptr + base + chunks, mask=inside, other=float("-inf"))
    chunk_mass = tl.load(stats_ptr + K_STATS * B * n_chunks + base + chunks, mask=inside, other=0.0)
    m = tl.max(chunk_max, axis=0)
    mass = tl.sum(tl.where(chunk_max > float("-inf"), chunk_mass * weight(chunk_max, m), 0.0), axis=0)
    return m, tl.log(mass)


@triton.jit
def _mix_chunk_kernel(
    x0, x1, x2, x3, x4, x5, x6, x7, s0, s1, s2, s3, s4, s5, s6, s7,
    w_ptr, temp_ptr, alpha_ptr, stats_ptr, out_ptr, ws_f, ws_i, top_k_ptr, top_p_ptr, min_p_ptr,
    B, V, CHUNK_LEN,
    K: tl.constexpr, K_STATS: tl.constexpr, NORMALIZE: tl.constexpr, PLAUSIBILITY: tl.constexpr,
    SUMMARISE: tl.constexpr, K_MAX: tl.constexpr, PROBE: tl.constexpr, TIE_SLACK: tl.constexpr,
    CHUNKS_BLOCK: tl.constexpr, BLOCK: tl.constexpr
):
    row, chunk, n_chunks, first, n = split_row.program_chunk(V, CHUNK_LEN)
    out_chunk = out_ptr + row.to(tl.int64) * V + first
    z0_min = float("-inf")
    if PLAUSIBILITY:
        alpha = tl.minimum(tl.load(alpha_ptr + row), 1.0)
        m0, _ = _row_stats(stats_ptr, 0, row, B, n_chunks, K_STATS, CHUNKS_BLOCK)
        z0_min = tl.where(alpha > 0.0, m0 + tl.log(tl.maximum(alpha, _FP32_TINY)), float("-inf"))
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
            z = _scaled(tl.load(ptr + row.to(tl.int64) * stride + first + offs, mask=inside, other=float("-inf")), t)
            if k == 0:
                keep = keep & (z >= z0_min)
            f = z
            if NORMALIZE:
                m, log_mass = _row_stats(stats_ptr, k, row, B, n_chunks, K_STATS, CHUNKS_BLOCK)
                f = tl.where(z > float("-inf"), z - m - log_mass, float("-inf"))
            s += tl.where(w == 0.0, 0.0, w * f)
        s = tl.where((s != s) | ~keep, float("-inf"), s)
        tl.store(out_chunk + offs, s, mask=inside)
    if SUMMARISE:
        # Every thread's stores of this chunk of s are visible to the whole program after it.
        tl.debug_barrier()
        greedy, t1, top_k, top_p, min_p = load_row_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr)
        split_row.summarise_chunk(
            out_chunk, n, first, row, chunk, n_chunks, ws_f, ws_i, B, V, 0, 1.0, top_k, top_p, min_p,
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
    inputs: MixInputs, out, *, normalize, chunk, block, ws: split_row.Workspace | None = None, sampling=None
):
    """Write the mixture into ``out``; with a workspace, also summarise each chunk of it
    for the split-row merge, with the ``sampling`` rows (top_k, top_p, min_p)."""
    B, V = inputs.logits[0].shape
    n_chunks = triton.cdiv(V, chunk)
    k_stats = len(inputs.logits) if normalize else int(inputs.uses_plausibility)
    stats = _stats(inputs, k_stats, chunk, block)
    summarise = ws is not None
    ws_i, ws_f = (ws.ints, ws.floats) if summarise else (out, out)
    k_max, tie_slack = (ws.k_max, ws.tie_slack) if summarise else (split_row.K_MAX, split_row.TIE_SLACK)
    top_k, top_p, min_p = sampling if summarise else (inputs.plausibility,) * 3
    _mix_chunk_kernel[(B, n_chunks)](
        *_model_args(inputs), inputs.weights, inputs.temperature, inputs.plausibility, stats, out, ws_f, ws_i,
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
    _launch_mix(
        inputs, mixed, normalize=False, chunk=chunk, block=min(block, triton.next_power_of_2(chunk)),
        ws=ws, sampling=(top_k, top_p, min_p),
    )
    ones = filled(1.0, B, inputs.device, torch.float32)  # the mixture is sampled at temperature 1
    tokens, logprobs = split_row.merge_and_sample(
        mixed, ws, uniform, ones, top_k, top_p, min_p, chunk=chunk, block=block
    )
    return tokens, logprobs, mixed, ws


def mix_and_sample_triton(inputs: MixInputs, top_k, top_p, min_p, uniform, top_k_hint=None):
    """Tokens [B] int64 and logprobs [B] fp32 for B >= 1; ``top_k_hint``: the top-k when
    the caller passed one number for every row (sizes the candidate buffers)."""
    tokens, logprobs, *_ = run_mix_and_sample_triton(inputs, top_k, top_p, min_p, uniform, top_k_hint=top_k_hint)
    return tokens, logprobs
