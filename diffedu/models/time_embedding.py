"""Sinusoidal timestep embedding (Vaswani et al. 2017, as used by Ho et al. 2020)."""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embed integer timesteps as [sin(t w_0), ..., sin(t w_{d/2-1}), cos(t w_0), ...],
    with frequencies w_i = max_period^(-i / (d/2)) from 1 down to ~1/max_period.

    Args:
        t: (B,) timesteps (any numeric dtype).
        dim: embedding size, even.
    Returns:
        (B, dim) float32.
    """
    if dim % 2 != 0 or dim < 2:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
