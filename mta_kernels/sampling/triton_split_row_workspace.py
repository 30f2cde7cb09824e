"""The split-row workspace: what the chunk phase writes and the merge phase reads.

The split-row sampler (``triton_split_row.py``) and the mixing kernels run in two launches
per call: a (B, chunks) grid summarises each chunk of a row, then one program per row
merges the summaries. They talk through one buffer, laid out here: :class:`Workspace`
describes the regions and allocates them on the host, and the ``@triton.jit`` helpers
below address them on the device. Plane indices are public so a kernel reads a plane by
name (``stat_ptr(ws, row, chunk, B, n_chunks, PLANE_MAX)``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

__all__ = [
    "BY_CHUNKS",
    "FULL_ROW",
    "PLANE_ARG",
    "PLANE_BOUND",
    "PLANE_COUNT",
    "PLANE_MASS",
    "PLANE_MAX",
    "ROW_FIRST",
    "ROW_KEY_CUT",
    "ROW_LAST",
    "ROW_SERVED",
    "ROW_T",
    "ROW_Z_MIN",
    "Workspace",
    "candidate_slots",
    "row_result_ptr",
    "stat_ptr",
]

# Per chunk statistics, [B, chunks] each:
_N_STAT_PLANES = tl.constexpr(5)
PLANE_MAX = tl.constexpr(0)  # fp32: chunk max of the raw x (the max of z = x / t over t)
PLANE_ARG = tl.constexpr(1)  # first argmax (vocabulary index)
PLANE_MASS = tl.constexpr(2)  # fp32: sum of exp(z - chunk max) over finite z
PLANE_BOUND = tl.constexpr(3)  # key bound of the chunk's candidates (low 32 bits)
PLANE_COUNT = tl.constexpr(4)  # candidates found (more than the room: overflow)
# Per row results, [B] each:
_N_ROW_PLANES = 6
ROW_SERVED = tl.constexpr(0)  # how the row was served: c, FULL_ROW or BY_CHUNKS
ROW_KEY_CUT = tl.constexpr(1)  # filter: exact key cut (low 32 bits)
ROW_Z_MIN = tl.constexpr(2)  # filter: fp32 min-p threshold
ROW_FIRST = tl.constexpr(3)  # filter: first and last index kept ([arg, arg] for greedy rows)
ROW_LAST = tl.constexpr(4)
ROW_T = tl.constexpr(5)  # filter: fp32 temperature z is written with (1 for greedy rows)

# Values of the ROW_SERVED plane besides c > 0, the candidates per chunk the row's cut and
# draw used:
FULL_ROW = 0  # cut and draw on the full row
BY_CHUNKS = -1  # nothing cut: the draw picks a chunk by the chunk masses, then scans it


class Workspace(NamedTuple):
    """The buffer of one split-row call: one int32 allocation (``ints``), also viewed as
    fp32 (``floats``) where it holds floats.

    For ``batch`` rows B cut into ``n_chunks`` chunks C, with room ``R = k_max + tie_slack``
    candidates per chunk, the regions in order (int32 words):

    =================  ==========  =====  =====================================================
    region             shape       dtype  holds
    =================  ==========  =====  =====================================================
    PLANE_MAX          [B, C]      fp32   max of the raw logits x in the chunk
    PLANE_ARG          [B, C]      int32  its first vocabulary index
    PLANE_MASS         [B, C]      fp32   sum of exp(z - chunk max) over the finite z
    PLANE_BOUND        [B, C]      int32  key bound of the chunk's candidates (low 32 bits)
    PLANE_COUNT        [B, C]      int32  candidates found (above c + tie_slack: overflow)
    candidate values   [B, C * R]  fp32   per row, C segments of c + tie_slack slots (c: the
                                          row's candidates per chunk): the chunk's
                                          candidates' z in vocabulary order, -inf padded
    candidate indices  [B, C * R]  int32  their vocabulary indices
    ROW_SERVED         [B]         int32  c, :data:`FULL_ROW` or :data:`BY_CHUNKS`
    ROW_KEY_CUT        [B]         int32  ``filter``: exact key cut (low 32 bits)
    ROW_Z_MIN          [B]         fp32   ``filter``: min-p threshold on z
    ROW_FIRST, _LAST   [B] each    int32  ``filter``: index range kept ([arg, arg] if greedy)
    ROW_T              [B]         fp32   ``filter``: the temperature z is written with
    =================  ==========  =====  =====================================================

    Keys fit in 32 bits (see ``triton_primitives.order_key``), so an int32 slot holds one
    exactly. Every kernel that touches the buffer is launched with ``K_MAX=k_max`` and
    ``TIE_SLACK=tie_slack``.
    """

    ints: torch.Tensor
    floats: torch.Tensor
    batch: int
    n_chunks: int
    k_max: int
    tie_slack: int

    @classmethod
    def allocate(cls, batch: int, vocab: int, chunk: int, device, k_max: int, tie_slack: int) -> Workspace:
        """An uninitialised workspace for ``batch`` rows of ``vocab`` tokens in chunks of ``chunk``."""
        n_chunks = triton.cdiv(vocab, chunk)
        words = batch * (n_chunks * (_N_STAT_PLANES.value + 2 * (k_max + tie_slack)) + _N_ROW_PLANES)
        # One allocation for every buffer: this path exists for latency.
        ints = torch.empty(words, dtype=torch.int32, device=device)
        return cls(ints, ints.view(torch.float32), batch, n_chunks, k_max, tie_slack)

    def chunk_counts(self) -> torch.Tensor:
        """[B, chunks] candidates each chunk found (above its room: overflow); for tests."""
        size = self.batch * self.n_chunks
        start = PLANE_COUNT.value * size
        return self.ints[start:start + size].view(self.batch, self.n_chunks)

    def rows_served(self) -> torch.Tensor:
        """[B] how each row was served: c > 0 candidates per chunk, :data:`FULL_ROW` or
        (``sample`` only) :data:`BY_CHUNKS`; for tests."""
        room = self.k_max + self.tie_slack
        start = self.batch * self.n_chunks * (_N_STAT_PLANES.value + 2 * room) + ROW_SERVED.value * self.batch
        return self.ints[start:start + self.batch]


@triton.jit
def stat_ptr(ws, row, chunk, B, n_chunks, PLANE: tl.constexpr):
    """The chunk's entry in plane ``PLANE`` of the [planes, B, chunks] statistics (``ws``:
    the int32 or fp32 view, as the plane holds)."""
    return ws + (PLANE * B + row) * n_chunks + chunk


@triton.jit
def candidate_slots(ws_f, ws_i, row, B, n_chunks, c, K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr):
    """The row's candidate values and vocabulary indices, read as one virtual row of
    ``n_chunks`` segments of ``c + TIE_SLACK`` slots; returns both pointers and its length."""
    # tl.cast: B and n_chunks may arrive as constexpr (Triton specialises arguments equal to 1).
    per_row = tl.cast(n_chunks, tl.int64) * (K_MAX + TIE_SLACK)
    base = tl.cast(B, tl.int64) * n_chunks * _N_STAT_PLANES + row.to(tl.int64) * per_row
    return ws_f + base, ws_i + base + B * per_row, n_chunks * (c + TIE_SLACK)


@triton.jit
def row_result_ptr(ws, row, B, n_chunks, PLANE: tl.constexpr, K_MAX: tl.constexpr, TIE_SLACK: tl.constexpr):
    """The row's entry in plane ``PLANE`` of the per-row results after the candidates."""
    return ws + tl.cast(B, tl.int64) * (n_chunks * (_N_STAT_PLANES + 2 * (K_MAX + TIE_SLACK)) + PLANE) + row
