"""Reference solutions of chapter 01's exercises (try first!). Checked by tests/test_exercises_ch01.py."""

import torch


def solution_noising_step_batch(x_prev: torch.Tensor, k: torch.Tensor, noise: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    alpha_t = (1 - betas[k]).reshape(-1, *[1] * (x_prev.ndim - 1))  # (B, 1, 1, 1) the paper's alpha_t, t = k + 1
    return alpha_t.sqrt() * x_prev + (1 - alpha_t).sqrt() * noise  # eq. (1.2)


def solution_skip_ahead(x_from: torch.Tensor, k_from: int, k_to: int, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    # the paper's r = k_from + 1 and t = k_to + 1; k_from = -1 is clean data, alpha_bar_0 = 1 (not alpha_bar[-1])
    alpha_bar_from = alpha_bar[k_from] if k_from >= 0 else torch.ones((), dtype=alpha_bar.dtype)
    keep = alpha_bar[k_to] / alpha_bar_from  # alphas[k_from + 1] * ... * alphas[k_to] = alpha_bar_t / alpha_bar_r
    return keep.sqrt() * x_from + (1 - keep).sqrt() * noise


SOLUTION_1_3 = 259  # the code index k; the paper's t = 260
