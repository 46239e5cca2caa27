"""Reference solutions of chapter 08's exercises (try first!). Checked by tests/test_exercises_ch08.py."""

import torch


def solution_velocity_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t: float) -> torch.Tensor:
    return (eps - x_t) / (1 - t)  # eq. (8.7): x_0 = (x_t - t eps) / (1 - t), v = eps - x_0


def solution_euler_step(x_t: torch.Tensor, t: float, t_next: float, velocity: torch.Tensor) -> torch.Tensor:
    return x_t + (t_next - t) * velocity  # eq. (8.5)


def solution_distillation_target(x_t: torch.Tensor, x_next: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    return (x_next - x_t) / (t_next - t)  # eq. (8.11)
