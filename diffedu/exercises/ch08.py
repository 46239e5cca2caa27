"""Exercises of chapter 08 (flow matching, few-step generation). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64), torch.randn(4, 1, 3, 3, generator=gen, dtype=torch.float64)


@exercise("8.1")
def check_velocity_from_eps(velocity_from_eps) -> None:
    """Exercise 8.1: a noise prediction read as a velocity, eq. (8.7)."""
    x0, eps = _batch(1)
    t = 0.6
    x_t = (1 - t) * x0 + t * eps
    result = expect_tensor(velocity_from_eps(x_t, eps, t), (4, 1, 3, 3), "the velocity").double()
    right = eps - x0
    if torch.allclose(result, -right):
        raise ExerciseError("check the sign: the velocity points from data to noise, d x_t / dt = eps - x_0")
    if torch.allclose(result, (eps - x_t) / t):
        raise ExerciseError("x_0 = (x_t - t eps) / (1 - t): divide by 1 - t, the weight of x_0 in (8.1), not by t")
    if torch.allclose(result, eps - x_t):
        raise ExerciseError("x_t is not x_0: solve (8.1) for x_0 first, then v = eps - x_0")
    expect_close(result, right, "v = (eps - x_t) / (1 - t), which equals eps - x_0")


@exercise("8.2")
def check_euler_step(euler_step) -> None:
    """Exercise 8.2: one Euler step of the flow ODE towards data, eq. (8.5)."""
    x_t, velocity = _batch(2)
    t, t_next = 0.75, 0.5
    result = expect_tensor(euler_step(x_t, t, t_next, velocity), (4, 1, 3, 3), "x at t_next").double()
    right = x_t + (t_next - t) * velocity
    if torch.allclose(result, x_t + (t - t_next) * velocity):
        raise ExerciseError("the step runs backwards in time, towards data: multiply by t_next - t, which is negative")
    if torch.allclose(result, x_t - t_next * velocity) or torch.allclose(result, x_t - t * velocity):
        raise ExerciseError("x_t - t v is the estimate of x_0 (8.7), a jump to t = 0; step only by t_next - t")
    expect_close(result, right, "x_t + (t_next - t) v")


@exercise("8.3")
def check_distillation_target(distillation_target) -> None:
    """Exercise 8.3: the velocity of the one student step that lands where two teacher steps land, eq. (8.11)."""
    x_t, x_next = _batch(3)
    t, t_next = 0.5, 0.25
    result = expect_tensor(distillation_target(x_t, x_next, t, t_next), (4, 1, 3, 3), "the target velocity").double()
    right = (x_next - x_t) / (t_next - t)
    if torch.allclose(result, -right):
        raise ExerciseError("check the sign: the student will step x_t + (t_next - t) v, so v = (x_next - x_t) / (t_next - t)")
    if torch.allclose(result, x_next - x_t):
        raise ExerciseError("that is the displacement; a velocity is displacement per unit of time: divide by t_next - t")
    if torch.allclose(result, 2 * right) or torch.allclose(result, right / 2):
        raise ExerciseError("the student's one step spans the whole interval from t to t_next, both teacher steps together")
    expect_close(result, right, "(x_next - x_t) / (t_next - t)")
