"""Exercises of chapter 03 (the UNet). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import torch
from torch import nn

from diffedu.exercises import (
    ExerciseError, exercise, expect_close, expect_tensor, expect_whole_number, reject_known_mistakes,
)
from diffedu.models.time_embedding import timestep_embedding
from diffedu.models import count_parameters


def _frequencies(half: int, denominator: float) -> torch.Tensor:
    return 10_000.0 ** (-torch.arange(half, dtype=torch.float64) / denominator)  # (half,)


@exercise("3.1")
def check_sinusoidal_embedding(sinusoidal_embedding) -> None:
    """Exercise 3.1: the sinusoidal timestep embedding, eq. (3.1), of code timesteps k."""
    k = torch.tensor([0, 1, 17, 999])  # (B,) code timesteps
    dim, half = 16, 8
    result = expect_tensor(sinusoidal_embedding(k.clone(), dim), (4, dim), "the embedding")
    expected = timestep_embedding(k, dim)  # (4, 16)
    if torch.allclose(result.double(), expected.double(), atol=1e-4, rtol=1e-4):
        return
    sin, cos = expected[:, :half], expected[:, half:]

    def sines_then_cosines(frequencies: torch.Tensor) -> torch.Tensor:  # (half,) -> (B, dim)
        angles = k.double()[:, None] * frequencies[None, :]  # (B, half)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    mistakes = [
        (torch.cat([cos, sin], dim=1), "sines first, then cosines: torch.cat([sin(angles), cos(angles)], dim=1)"),
        (torch.stack([sin, cos], dim=2).flatten(1),
         "you interleaved them (sin, cos, sin, cos, ...): eq. (3.1) puts all the sines first, then all the cosines, "
         "torch.cat([sin(angles), cos(angles)], dim=1)"),
        (torch.stack([cos, sin], dim=2).flatten(1),
         "you interleaved them (cos, sin, cos, sin, ...): eq. (3.1) puts all the sines first, then all the cosines, "
         "torch.cat([sin(angles), cos(angles)], dim=1)"),
        (timestep_embedding(k + 1, dim),
         "you embedded k + 1, the paper's t. Eq. (3.1) embeds the code timestep k that the UNet receives, "
         "k = 0..999, as it is: angles = k[:, None] * w[None, :]"),
        (sines_then_cosines(_frequencies(half, dim)),
         "the exponent divides i by d/2, not by d: w_i = 10000^(-i / (dim/2)), from 1 down to almost 1/10000"),
        (sines_then_cosines(_frequencies(half, half - 1)),
         "the exponent divides i by d/2, not by d/2 - 1: w_i = 10000^(-i / (dim/2)) for i = 0..dim/2-1"),
    ]
    reject_known_mistakes(result, mistakes, atol=1e-4)
    expect_close(result, expected, "frequencies are w_i = 10000^(-i / (dim/2)) for i = 0..dim/2-1, "
                 "angles = k[:, None] * w[None, :], then sines first, then cosines", atol=1e-4)


@exercise("3.2")
def check_guided_eps(guided_eps) -> None:
    """Exercise 3.2: classifier-free guidance, eq. (3.3)."""
    gen = torch.Generator().manual_seed(0)
    eps_cond, eps_uncond = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    for w in (3.0, 0.0, 1.0):
        output = guided_eps(eps_cond.clone(), eps_uncond.clone(), w)
        result = expect_tensor(output, (2, 1, 4, 4), "the guided noise")
        expected = eps_uncond + w * (eps_cond - eps_uncond)
        if torch.allclose(result, expected, atol=1e-5):
            continue
        mistakes = [
            ((1 + w) * eps_cond - w * eps_uncond,
             "that is Ho & Salimans' form (1 + w) eps_cond - w eps_uncond, whose w counts from 0 = plain conditional: "
             "the paper's w is our w - 1. With the w of (3.3), w = 1 must give eps_cond: "
             "eps_uncond + w (eps_cond - eps_uncond)"),
            (eps_uncond + w * (eps_uncond - eps_cond),
             "the difference points from the unconditional prediction towards the conditional one: "
             "(eps_cond - eps_uncond)"),
            (w * eps_cond, "scaling the conditional prediction is not guidance: (3.3) starts from eps_uncond and "
             "moves w times the difference (eps_cond - eps_uncond)"),
        ]
        reject_known_mistakes(result, mistakes, opening=f"with w = {w}: ")
        expect_close(result, expected, f"with w = {w}: w = 0 must give eps_uncond and w = 1 eps_cond")


@exercise("3.3")
def check_conv_parameters(answer) -> None:
    """Exercise 3.3: parameters of nn.Conv2d(64, 128, kernel_size=3), with its bias."""
    answer = expect_whole_number(answer, "a number of parameters")
    conv = nn.Conv2d(64, 128, kernel_size=3, device="meta")  # shapes only: no memory, no draw from the global RNG
    if answer == count_parameters(conv):
        return
    weights = conv.weight.numel()
    if answer == weights:
        raise ExerciseError("almost: each of the 128 output channels also has a bias")
    if answer in (64 * 128 + 128, 64 * 128):
        raise ExerciseError("each weight connects an input channel to an output channel at each of the 3 x 3 kernel positions")
    if answer == weights + 64:
        raise ExerciseError("there is one bias per output channel (128), not per input channel")
    raise ExerciseError("count in_channels * out_channels * kernel_height * kernel_width weights, plus one bias per output channel")
