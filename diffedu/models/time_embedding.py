"""Sinusoidal timestep embedding (Vaswani et al. 2017, as used by Ho et al. 2020)."""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0, max_frequency: float | None = None) -> torch.Tensor:
    """Embed integer timesteps as [sin(t w_0), ..., sin(t w_{d/2-1}), cos(t w_0), ...],
    with frequencies w_i = max_period^(-i / (d/2)) from 1 down to ~1/max_period.

    Args:
        t: (B,) timesteps (any numeric dtype).
        dim: embedding size, even.
        max_frequency: drop (set to 0) the pairs whose frequency w_i is above this, in radians per unit of t:
            a network that is differentiated in t (chapter 08's MeanFlow) needs an embedding without wiggles
            faster than the function it learns. None keeps all.
    Returns:
        (B, dim) float32 (float64 for float64 t).
    """
    if dim % 2 != 0 or dim < 2:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32  # float64 in, float64 out (for checks)
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    angles = t.to(dtype)[:, None] * freqs[None, :]  # (B, half)
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if max_frequency is not None:
        embedding = embedding * (freqs <= max_frequency).to(dtype).repeat(2)  # the same pairs of sin and cos
    return embedding
