"""The decode loop's braking controller: checks, tables and kernel once, per token a launch.

:func:`~mta_kernels.braking.braking_step` checks all of its arguments at every call. A
decode loop builds one :class:`BrakingController` for its batch instead (tables moved to
the device, state allocated, config checked, kernel chosen), as :class:`mta_kernels.Sampler`
does for sampling, and calls :meth:`BrakingController.step` once per token.
"""

from __future__ import annotations

import torch

from mta_kernels._validation import check_int
from mta_kernels.braking.ops import BRAKING_STEP
from mta_kernels.braking.state import BrakingConfig, BrakingState
from mta_kernels.braking.step import check_config, check_forced_ids, check_tables
from mta_kernels.braking.tables import MarkerTables

__all__ = ["BrakingController"]


class BrakingController:
    """The braking step of one decode loop's batch, many times.

    Parameters
    ----------
    tables : MarkerTables
        Moved to ``device`` once.
    cfg : BrakingConfig
        Checked now; read at every step, so its values may change between steps
        (:meth:`BrakingConfig.normalised` re-checks only what changed). Assigning a new
        config to :attr:`cfg` works too.
    batch_size : int
        Rows ``B`` of every ``logits`` it will be called with.
    device : torch.device or str
        Where those logits live.
    in_think : bool or Tensor [B] bool
        Which rows start inside thinking (see :meth:`BrakingState.new`).

    Attributes
    ----------
    state : BrakingState
        The per-row state, updated in place by every step (``state.reset_row`` starts a slot
        afresh).
    backend : str
        The kernel chosen for ``device`` (``"cpp"``, ``"cuda"`` or ``"reference"``).

    Examples
    --------
    >>> import torch
    >>> from mta_kernels.braking import BrakingConfig, BrakingController, MarkerTables
    >>> tables = MarkerTables.from_token_ids([[4]], [5], 2, [3, 2], vocab_size=8)
    >>> controller = BrakingController(tables, BrakingConfig(max_thinking_tokens=1), 1, "cpu")
    >>> controller.step(torch.zeros(1, 8), torch.tensor([-1]))[0].isinf().any().item()
    False
    >>> controller.step(torch.zeros(1, 8), torch.tensor([6]))[0].tolist()  # budget reached
    [-inf, -inf, -inf, 0.0, -inf, -inf, -inf, -inf]
    """

    __slots__ = ("batch_size", "device", "tables", "state", "backend", "_cfg", "_kernel", "_max_forced_id",
                 "_no_tokens")

    def __init__(
        self,
        tables: MarkerTables,
        cfg: BrakingConfig,
        batch_size: int,
        device: torch.device | str = "cpu",
        *,
        in_think: bool | torch.Tensor = True,
    ):
        self.batch_size = check_int(batch_size, "batch_size", lo=0)
        self.device = torch.device(device)
        self.tables = check_tables(tables).to(self.device)
        self._max_forced_id = self.tables.max_forced_id
        self.cfg = cfg
        self.state = BrakingState.new(self.batch_size, self.device, in_think)
        self.backend = BRAKING_STEP.backend(self.device)
        self._kernel = BRAKING_STEP.kernel(self.device)
        self._no_tokens = torch.full((self.batch_size,), -1, dtype=torch.int64, device=self.device)

    @property
    def cfg(self) -> BrakingConfig:
        return self._cfg

    @cfg.setter
    def cfg(self, cfg: BrakingConfig) -> None:
        check_config(cfg).normalised(self.batch_size, self.device)  # raises now on a bad value
        self._cfg = cfg

    def step(self, logits: torch.Tensor, last_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """One braking decode step, in place on ``logits`` and :attr:`state`, as
        :func:`~mta_kernels.braking.braking_step`.

        ``logits`` [B, V] (fp32 / bf16 / fp16, contiguous, on the controller's device) and
        ``last_tokens`` [B] int64 (negative or ``None``: nothing to consume). Only shapes,
        contiguity and dtypes are checked here (Python comparisons); the C++ kernels check
        the rest again. Returns ``logits``.
        """
        B = self.batch_size
        if logits.dim() != 2 or logits.shape[0] != B or not logits.is_contiguous():
            raise ValueError(f"logits must be a contiguous [B, V] tensor with B={B} (the controller's batch_size), "
                             f"got shape {tuple(logits.shape)}")
        if logits.shape[1] <= self._max_forced_id:
            check_forced_ids(self.tables, logits.shape[1])
        if last_tokens is None:
            last_tokens = self._no_tokens
        elif last_tokens.shape != (B,) or last_tokens.dtype != torch.int64:
            raise ValueError(f"last_tokens must be an int64 [B] tensor with B={B}, "
                             f"got {last_tokens.dtype} of shape {tuple(last_tokens.shape)}")
        config = self._cfg.normalised(B, self.device)
        self.state.ensure_fits(self.tables)  # a dictionary look-up unless the state was replaced
        if B:
            self._kernel(logits, last_tokens, self.state.counters, self.state.flags, self.tables.packed,
                         self.tables.layout, config)
        return logits
