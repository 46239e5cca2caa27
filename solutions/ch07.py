"""Reference solutions of chapter 07's exercises (try first!). Checked by tests/test_exercises_ch07.py."""

import math

import torch

from diffedu.sde import ode_euler_step


def solution_heun_step(model, x_t: torch.Tensor, k: int, k_next: int, schedule) -> torch.Tensor:
    eps_start = model(x_t, k)  # the slope of (7.7) at the start of the step
    x_euler = ode_euler_step(x_t, k, k_next, eps_start, schedule)  # DDIM's step
    eps_end = model(x_euler, k_next)  # the slope where it lands
    return ode_euler_step(x_t, k, k_next, (eps_start + eps_end) / 2, schedule)  # eq. (7.8)


def solution_euler_step_in_u(x_t: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule) -> torch.Tensor:
    beta_t, alpha_bar_t = schedule.betas[k], schedule.alpha_bar[k]  # 0-d tensors
    score = -eps / (1 - alpha_bar_t).sqrt()  # eq. (7.2)
    # (7.6): dx/du = -1/2 beta(u) (x + score); u falls by (k - k_next) / T and beta(u) = T beta_t
    return x_t + 0.5 * beta_t * (k - k_next) * (x_t + score)


SOLUTION_7_3 = 0.59  # Euler in u lands about 0.6 times as far from the exact ODE as DDIM at 20 steps (measured)

SOLUTION_7_4 = 0.5 / math.sqrt(0.5**2 + 2**2)  # x_bar(sigma) = C sqrt(s^2 + sigma^2)
