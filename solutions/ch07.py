"""Reference solutions of chapter 07's exercises (try first!). Checked by tests/test_exercises_ch07.py."""

import math

import torch


def solution_score_from_eps(eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    return -eps / math.sqrt(1 - alpha_bar)  # eq. (7.2)


def solution_langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    return x + 0.5 * step_size * score + math.sqrt(step_size) * noise  # eq. (7.3)


SOLUTION_7_3 = 0.5 / math.sqrt(0.5**2 + 2**2)  # x_bar(sigma) = C sqrt(s^2 + sigma^2)
