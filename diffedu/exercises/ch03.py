"""Exercises of chapter 03 (the UNet). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor, require_answer
from diffedu.models.time_embedding import timestep_embedding


@exercise("3.1")
def check_sinusoidal_embedding(sinusoidal_embedding) -> None:
    """Exercise 3.1: the sinusoidal timestep embedding, eq. (3.1)."""
    t = torch.tensor([0, 1, 17, 999])
    result = expect_tensor(sinusoidal_embedding(t, 16), (4, 16), "the embedding")
    expected = timestep_embedding(t, 16)
    if torch.allclose(result, torch.cat([expected[:, 8:], expected[:, :8]]).reshape(4, 16), atol=1e-5) or torch.allclose(result[:, :8], expected[:, 8:], atol=1e-5):
        raise ExerciseError("sines first, then cosines: torch.cat([sin(angles), cos(angles)], dim=1)")
    expect_close(result, expected, "frequencies are w_i = 10000^(-i / (dim/2)) for i = 0..dim/2-1, angles = t[:, None] * w[None, :]", atol=1e-4)


@exercise("3.2")
def check_guided_eps(guided_eps) -> None:
    """Exercise 3.2: classifier-free guidance, eq. (3.3)."""
    gen = torch.Generator().manual_seed(0)
    eps_cond, eps_uncond = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    for w in (3.0, 0.0, 1.0):
        result = expect_tensor(guided_eps(eps_cond, eps_uncond, w), (2, 1, 4, 4), "the guided noise")
        if w == 3.0 and torch.allclose(result, eps_cond + w * (eps_cond - eps_uncond), atol=1e-6):
            raise ExerciseError("start from the unconditional prediction: eps_uncond + w (eps_cond - eps_uncond)")
        expect_close(result, eps_uncond + w * (eps_cond - eps_uncond), f"with w = {w}: w = 0 must give eps_uncond and w = 1 eps_cond")


@exercise("3.3")
def check_conv_parameters(answer) -> None:
    """Exercise 3.3: parameters of a 3x3 convolution from 64 to 128 channels, with bias."""
    require_answer(answer)
    expected = 64 * 128 * 3 * 3 + 128
    if answer == 64 * 128 * 3 * 3:
        raise ExerciseError("almost: each of the 128 output channels also has a bias")
    if answer == 64 * 128 + 128 or answer == 64 * 128:
        raise ExerciseError("each weight connects an input channel to an output channel at each of the 3 x 3 kernel positions")
    if answer != expected:
        raise ExerciseError("count in_channels * out_channels * kernel_height * kernel_width weights, plus one bias per output channel")


# Reference solutions (try first!)


def solution_sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)  # (half,)
    angles = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def solution_guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    return eps_uncond + w * (eps_cond - eps_uncond)


SOLUTION_3_3 = 64 * 128 * 3 * 3 + 128
