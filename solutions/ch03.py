"""Reference solutions of chapter 03's exercises (try first!). Checked by tests/test_exercises_ch03.py."""

import math

import torch


def solution_sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)  # (half,) w_i = 10000^(-i / (dim/2))
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # eq. (3.1): sines, then cosines


def solution_guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    return eps_uncond + w * (eps_cond - eps_uncond)  # eq. (3.3)


SOLUTION_3_3 = 64 * 128 * 3 * 3 + 128  # weights in x out x kernel positions, plus one bias per output channel
