"""The decode loop's sampler: checks and backend choice once, per token only the kernel.

vLLM's sampler picks its backend at construction; this is the same idea for
:func:`mta_kernels.sample`. A decode loop builds one :class:`Sampler` for its batch (the
``[B]`` parameter tensors prepared and range-checked, the kernel chosen) and calls it once
per token; :func:`mta_kernels.sample` builds one per call.
"""

from __future__ import annotations

import torch

from mta_kernels._validation import check_int, sampling_rows
from mta_kernels.sampling.ops import SAMPLE

__all__ = ["Sampler"]


class Sampler:
    """Draw one token per row from ``softmax(filter_logits(logits, ...))``, many times.

    Parameters
    ----------
    batch_size : int
        Rows ``B`` of every ``logits`` it will be called with.
    device : torch.device or str
        Where those logits live.
    temperature, top_k, top_p, min_p : scalar or Tensor [B]
        As in :func:`mta_kernels.sample`; checked here, once. A ``[B]`` tensor is read
        (not copied, for the int64 / fp32 dtypes the kernels take) at every call, so
        editing it in place between calls changes the next draws without a new check.

    Examples
    --------
    >>> import torch, mta_kernels as mk
    >>> sampler = mk.Sampler(2, "cpu", temperature=0.0)
    >>> tokens, logprobs = sampler(torch.tensor([[0.0, 3.0], [5.0, 1.0]]))
    >>> tokens
    tensor([1, 0])
    """

    __slots__ = ("batch_size", "device", "params", "backend", "_kernel")

    def __init__(self, batch_size: int, device: torch.device | str, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0):
        self.batch_size = check_int(batch_size, "batch_size", lo=0)
        self.device = torch.device(device)
        #: (temperature, top_k, top_p, min_p) as the kernels take them.
        self.params = sampling_rows(temperature, top_k, top_p, min_p, self.batch_size, self.device)
        self.backend = SAMPLE.backend(self.device)
        self._kernel = SAMPLE.kernel(self.device)

    def __call__(
        self, logits: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B] int64, logprobs [B] fp32)`` for ``logits`` [B, V] (fp32 / bf16 /
        fp16 on the sampler's device), as :func:`mta_kernels.sample` with
        ``return_logprobs=True``.

        Only the row count is checked per call (a Python comparison); dtype and device
        are the caller's promise. One ``U[0, 1)`` draw per row from ``generator``.
        """
        B = self.batch_size
        if logits.dim() != 2 or logits.shape[0] != B or logits.shape[1] == 0:
            raise ValueError(f"logits must have shape [B, V] with B={B} (the sampler's batch_size) and V >= 1, "
                             f"got shape {tuple(logits.shape)}")
        uniform = torch.rand(B, generator=generator, device=self.device, dtype=torch.float32)
        if B == 0:
            return torch.empty(0, dtype=torch.int64, device=self.device), uniform
        return self._kernel(logits.contiguous(), *self.params, uniform)
