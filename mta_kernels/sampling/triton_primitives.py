"""Triton building blocks of the samplers: order keys, radix select, row cut, inverse-CDF draw.

Every sampling kernel (``triton_row.py``, ``triton_split_row.py``) and the mixing kernels
(``mta_kernels/mixing/triton_kernels.py``) are written with these ``@triton.jit`` helpers,
so a cut or a draw means the same thing on every path. Notation, as in ``reference.py``:

* ``z = x / t``: a logit scaled by the row's temperature, fp32; NaN reads as ``-inf``; a
  row whose max overflows when scaled is greedy (:func:`max_and_scale`);
* ``m``: the row max of ``z``; ``weight(z, m) = exp(z - m)``, the unnormalised softmax;
* a *key*: ``order_key(z)``, an int64 in ``[0, 2^32)`` ordered as the floats are. Cuts are
  key bounds ("keep ``key >= bound``"), so a cut never depends on rounding a float back
  from a histogram bucket.

The helpers read a "row" through a pointer and a length, so the same code runs on a row of
logits, on a chunk of one, or on a buffer of candidates gathered from several chunks.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = [
    "BLOCK",
    "INT32_MAX",
    "LOW32",
    "NO_KEY",
    "inverse_cdf_draw",
    "load_row_params",
    "load_z",
    "max_and_scale",
    "order_key",
    "radix_select",
    "row_cut",
    "row_max_argmax",
    "token_logprob",
    "weight",
]

#: Tokens per tile. The radix passes build 16-bucket one-hot histograms on [BLOCK, 16]
#: tiles; 1024 keeps them in registers.
BLOCK = 1024

_SIGN_BIT = tl.constexpr(2147483648)
#: The low 32 bits: every key fits, so a key round-trips through an int32 slot.
LOW32 = tl.constexpr(4294967295)
#: A key bound above every key (2^32): "keep ``key >= NO_KEY``" keeps nothing.
NO_KEY = tl.constexpr(4294967296)
INT32_MAX = tl.constexpr(2147483647)


@triton.jit
def order_key(z):
    """fp32 -> int64 key in ``[0, 2^32)``, monotone in ``z``.

    The float's bits read as a sign-magnitude integer: non-negative floats are moved above
    the negative ones (``+ 2^31``), negative ones are reversed (``-1 - bits``). ``-0.0`` and
    ``+0.0`` have different keys, so callers fold ``-0.0`` first (:func:`load_z` does).
    """
    b = z.to(tl.int32, bitcast=True).to(tl.int64)
    return tl.where(b >= 0, b + _SIGN_BIT, -1 - b)


@triton.jit
def load_z(row_ptr, offs, n, t):
    """``z = x / t`` in fp32 at ``row_ptr[offs]``; positions at or past ``n`` and NaN read as ``-inf``.

    ``+ 0.0`` folds ``-0.0`` into ``+0.0``, so equal floats get equal keys (a cut at a
    zero logit keeps both zeros, as the reference's float comparison does).
    """
    x = tl.load(row_ptr + offs, mask=offs < n, other=float("-inf")).to(tl.float32)
    x = tl.where(x != x, float("-inf"), x)
    return x / t + 0.0


@triton.jit
def weight(z, m):
    """``exp(z - m)``, with the max weighing exactly 1 even when it is ``+inf`` (extreme
    temperatures overflow ``z``; ``inf - inf`` would be NaN)."""
    return tl.where(z == m, 1.0, tl.exp(z - m))


@triton.jit
def row_max_argmax(row_ptr, n, BLOCK: tl.constexpr):
    """Max of the raw ``x`` over ``row_ptr[:n]`` (NaN as ``-inf``) and the first position
    holding it (ties: the earliest). The max of ``z = x / t`` is ``x_max / t``
    (:func:`max_and_scale`): division by ``t > 0`` keeps the order."""
    offs0 = tl.arange(0, BLOCK)
    m = float("-inf")
    arg = 0
    for start in range(0, n, BLOCK):
        z = load_z(row_ptr, start + offs0, n, 1.0)
        tile_m = tl.max(z, axis=0)
        # first index of the tile max; strict > keeps the earliest tile on ties
        tile_arg = tl.min(tl.where(z == tile_m, start + offs0, INT32_MAX), axis=0)
        better = tile_m > m
        arg = tl.where(better, tile_arg, arg)
        m = tl.maximum(m, tile_m)
    return m, arg


@triton.jit
def max_and_scale(greedy, t, x_max):
    """``(greedy, t, m)`` of a row whose raw max is ``x_max``, from ``load_row_params``'
    ``(greedy, t)``: a finite ``x_max`` that ``/ t`` overflows (a tiny temperature) makes the
    row greedy too, scaled by 1 (reference.py's rule: the limit T -> 0+ is greedy); ``m``
    is the max of ``z``."""
    q = x_max / t
    finite = (x_max > float("-inf")) & (x_max < float("inf"))
    over = finite & ((q == float("inf")) | (q == float("-inf")))
    greedy = tl.where(over, 1, greedy)
    t = tl.where(greedy != 0, 1.0, t)
    return greedy, t, x_max / t + 0.0


@triton.jit
def radix_select(row_ptr, n, t, m, floor_key, target, mass, USE_MASS: tl.constexpr, BLOCK: tl.constexpr):
    """Key bound of the top tokens of ``row_ptr[:n]`` whose running total reaches ``target``.

    Among the finite tokens with ``key >= floor_key``, returns the smallest bound such that
    the tokens with ``key >= bound`` are those before and including the one where the total
    counted from the top reaches ``target``: a count (top-k's ``k``) or, with ``USE_MASS``,
    ``target * mass`` of ``weight(z, m)`` (top-p), where a negative ``mass`` stands for the
    total weight of those tokens.

    An exact radix select, 4 bits of the key per pass over the row (16-bucket histograms of
    counts, and of weights for ``USE_MASS``). It stops early once the bucket holding the cut
    is kept whole or holds a single token, so ties at the cut are all kept. Rounding that
    leaves the total short of ``target`` keeps the whole current bucket.
    """
    offs0 = tl.arange(0, BLOCK)
    digits = tl.arange(0, 16)
    prefix = tl.zeros((), tl.int64)
    shift = tl.full((), 28, tl.int64)
    above = 0.0  # weight of tokens above the current bucket
    done = 0
    bound = tl.zeros((), tl.int64)
    while done == 0:
        hist_c = tl.zeros((16,), tl.float32)
        hist_w = tl.zeros((16,), tl.float32)
        # Bits above this pass's digit; int64 so the first pass's shift by 32 is defined.
        hi_mask = (LOW32 << (shift + 4)) & LOW32
        for start in range(0, n, BLOCK):
            z = load_z(row_ptr, start + offs0, n, t)
            key = order_key(z)
            valid = (z > float("-inf")) & (key >= floor_key) & ((key & hi_mask) == prefix)
            digit = (key >> shift) & 15
            onehot = (digit[:, None] == digits[None, :]) & valid[:, None]
            hist_c += tl.sum(onehot.to(tl.float32), axis=0)
            if USE_MASS:
                hist_w += tl.sum(tl.where(onehot, weight(z, m)[:, None], 0.0), axis=0)
        if USE_MASS:
            weights = hist_w
        else:
            weights = hist_c
        if USE_MASS:
            if shift == 28:
                target = target * tl.where(mass < 0.0, tl.sum(weights, axis=0), mass)
        # suffix[d] = weight of buckets d..15
        suffix = tl.sum(tl.where(digits[None, :] >= digits[:, None], weights[None, :], 0.0), axis=1)
        reached = (above + suffix) >= target
        n_reached = tl.sum(reached.to(tl.int32), axis=0)
        if n_reached == 0:
            # Rounding left the total short of the target: keep the whole current bucket.
            bound = prefix
            done = 1
        else:
            d = n_reached - 1
            pick = digits == d
            count_d = tl.sum(tl.where(pick, hist_c, 0.0), axis=0)
            suffix_d = tl.sum(tl.where(pick, suffix, 0.0), axis=0)
            weight_d = tl.sum(tl.where(pick, weights, 0.0), axis=0)
            new_prefix = prefix | (d.to(tl.int64) << shift)
            # Reaching the target exactly at the bucket's end keeps the bucket whole.
            whole_bucket = above + suffix_d == target
            if (count_d == 1) | whole_bucket | (shift == 0):
                bound = new_prefix
                done = 1
            else:
                above += suffix_d - weight_d
                prefix = new_prefix
                shift -= 4
    return bound


@triton.jit
def row_cut(row_ptr, n, t, m, top_k, top_p, min_p, mass, BLOCK: tl.constexpr):
    """The cuts of one row: ``(key_cut, z_min)``; a token is kept when it is finite,
    ``order_key(z) >= key_cut`` and ``z >= z_min``.

    ``key_cut`` is the larger of top-k's bound (off unless ``0 < top_k < n``) and top-p's
    bound, searched among the tokens top-k kept (off at ``top_p >= 1``); ``mass`` is the
    softmax denominator top-p is relative to, negative for "the mass top-k kept here".
    ``z_min = m + log(min_p)`` is min-p's closed form (``-inf`` when off).
    """
    key_k = tl.zeros((), tl.int64)
    if (top_k > 0) & (top_k < n):
        key_k = radix_select(row_ptr, n, t, m, key_k, top_k.to(tl.float32), -1.0, False, BLOCK)
    key_p = key_k
    if top_p < 1.0:
        key_p = radix_select(row_ptr, n, t, m, key_k, top_p, mass, True, BLOCK)
    z_min = float("-inf")
    if min_p > 0.0:
        z_min = m + tl.log(min_p)
    return tl.maximum(key_k, key_p), z_min


@triton.jit
def load_row_params(row, temp_ptr, top_k_ptr, top_p_ptr, min_p_ptr):
    """Row ``row``'s sampling parameters: ``(greedy, t, top_k, top_p, min_p)``.

    ``greedy`` (int32 0/1) for temperature <= 0, whose ``t`` is then 1 (:func:`max_and_scale`
    adds the rows a tiny temperature makes greedy, once the row max is known); ``top_p``
    and ``min_p`` clamped to [0, 1].
    """
    temp = tl.load(temp_ptr + row)
    # Clamp so out-of-range values (possible only when range checks were skipped, e.g.
    # under CUDA-graph capture) can never index out of bounds.
    top_k = tl.load(top_k_ptr + row)
    top_p = tl.minimum(tl.maximum(tl.load(top_p_ptr + row), 0.0), 1.0)
    min_p = tl.minimum(tl.maximum(tl.load(min_p_ptr + row), 0.0), 1.0)
    greedy = ((temp <= 0.0) | (temp != temp)).to(tl.int32)
    t = tl.where(greedy != 0, 1.0, temp)
    return greedy, t, top_k, top_p, min_p


@triton.jit
def inverse_cdf_draw(z_ptr, n, t, m, key_cut, z_min, u, BLOCK: tl.constexpr):
    """Inverse-CDF draw among the kept entries of ``z_ptr[:n]`` (scaled by ``t`` on load):
    ``(position, Z)``, the position the uniform ``u`` picks and the kept mass ``Z``.

    The CDF runs in storage order (vocabulary order for a row), the reference's rule, so
    both pick the same token for the same ``u``. Two passes: ``Z``, then the number of
    positions whose running mass is still ``<= u * Z``; rounding past the end lands on the
    last kept position.
    """
    offs0 = tl.arange(0, BLOCK)
    total = 0.0
    last_kept = -1
    for start in range(0, n, BLOCK):
        offs = start + offs0
        z = load_z(z_ptr, offs, n, t)
        keep = (z > float("-inf")) & (order_key(z) >= key_cut) & (z >= z_min)
        total += tl.sum(tl.where(keep, weight(z, m), 0.0), axis=0)
        last_kept = tl.maximum(last_kept, tl.max(tl.where(keep, offs, -1), axis=0))
    target = u * total
    # The position is the number of positions whose running mass is still <= target.
    running = 0.0
    below = 0
    for start in range(0, n, BLOCK):
        offs = start + offs0
        z = load_z(z_ptr, offs, n, t)
        keep = (z > float("-inf")) & (order_key(z) >= key_cut) & (z >= z_min)
        w = tl.where(keep, weight(z, m), 0.0)
        cdf = running + tl.cumsum(w, axis=0)
        below += tl.sum(((cdf <= target) & (offs < n)).to(tl.int32), axis=0)
        running += tl.sum(w, axis=0)
    return tl.minimum(below, last_kept), total


@triton.jit
def token_logprob(z_tok, m, total):
    """Log-probability of a kept token with scaled logit ``z_tok`` in a row of max ``m`` and
    kept mass ``total`` (exactly ``-log(total)`` for the max, even at ``m = +inf``)."""
    return tl.where(z_tok == m, 0.0, z_tok - m) - tl.log(total)
