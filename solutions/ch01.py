"""Reference solutions of chapter 01's exercises (try first!). Checked by tests/test_exercises_ch01.py."""

import math

import torch


def solution_skip_ahead(alpha_bar: torch.Tensor, k_from: int, k_to: int) -> tuple[torch.Tensor, torch.Tensor]:
    # the paper's r = k_from + 1 and t = k_to + 1; k_from = -1 is clean data, alpha_bar_0 = 1 (not alpha_bar[-1])
    alpha_bar_from = alpha_bar[k_from] if k_from >= 0 else torch.ones((), dtype=alpha_bar.dtype)
    keep = alpha_bar[k_to] / alpha_bar_from  # alphas[k_from + 1] * ... * alphas[k_to] = alpha_bar_t / alpha_bar_r
    return keep.sqrt(), (1 - keep).sqrt()  # x_to = sqrt(keep) x_from + sqrt(1 - keep) eps, as in (1.3) and (1.5)


def solution_cosine_betas(num_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    t_fraction = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps  # the paper's t / T for t = 0..T
    f = torch.cos((t_fraction + offset) / (1 + offset) * math.pi / 2) ** 2  # eq. (1.7), (T + 1,)
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, from (1.4); (T,)


SOLUTION_1_3 = 145  # (0.5**2 * make_schedule("linear").snr < 1).nonzero()[0]: the code index k; the paper's t = 146
