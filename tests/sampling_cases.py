"""Logit and parameter generators shared by the sampling tests (and the benchmarks)."""

from __future__ import annotations

import torch


def make_logits(B: int, V: int, kind: str = "normal1", *, seed: int = 0, dtype=torch.float32, device="cpu"):
    """Logits from normal(σ=1), normal(σ=5) or Gumbel, as FlashInfer and vLLM test with."""
    g = torch.Generator().manual_seed(seed)
    if kind == "normal1":
        x = torch.randn(B, V, generator=g)
    elif kind == "normal5":
        x = torch.randn(B, V, generator=g) * 5
    elif kind == "gumbel":
        u = torch.rand(B, V, generator=g).clamp_min(1e-12)
        x = -torch.log(-torch.log(u))
    else:
        raise ValueError(kind)
    return x.to(dtype=dtype, device=device)


def per_row_params(B: int, V: int, *, seed: int = 0, device="cpu"):
    """Per-row parameters mixing greedy rows, rows with filters off and every filter on."""
    g = torch.Generator().manual_seed(seed)
    temperature = torch.rand(B, generator=g) * 1.8 + 0.1
    top_k = torch.randint(-1, V + 2, (B,), generator=g)
    top_p = torch.rand(B, generator=g) * 0.95 + 0.05
    min_p = torch.rand(B, generator=g) * 0.2
    temperature[::5] = 0.0  # greedy rows
    top_k[1::4] = 0  # top-k off
    top_p[2::4] = 1.0  # top-p off
    min_p[3::4] = 0.0  # min-p off
    return [t.to(device) for t in (temperature, top_k, top_p, min_p)]
