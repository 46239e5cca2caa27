"""Reference solutions of chapter 02's exercises (try first!). Checked by tests/test_exercises_ch02.py."""

import math

import torch


def solution_posterior_variance(betas: torch.Tensor) -> torch.Tensor:
    alpha_bar = torch.cumprod(1 - betas, dim=0)  # eq. (1.4)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=betas.dtype), alpha_bar[:-1]])  # alpha_bar_{t-1}; alpha_bar_0 = 1
    return (1 - alpha_bar_prev) / (1 - alpha_bar) * betas  # eq. (2.3)


def solution_gaussian_eps_star(x_t: torch.Tensor, alpha_bar: float, mu: torch.Tensor, s: float) -> torch.Tensor:
    variance = alpha_bar * s**2 + 1 - alpha_bar  # q_t = N(sqrt(alpha_bar) mu, variance I)
    score = -(x_t - math.sqrt(alpha_bar) * mu) / variance
    return -math.sqrt(1 - alpha_bar) * score  # eq. (2.10)


def solution_v_to_x0_and_eps(x_t: torch.Tensor, alpha_bar: float, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred_x0 = math.sqrt(alpha_bar) * x_t - math.sqrt(1 - alpha_bar) * v  # rotate (x_t, v) back by the angle phi
    eps = math.sqrt(1 - alpha_bar) * x_t + math.sqrt(alpha_bar) * v
    return pred_x0, eps
