"""Exercises of chapter 07 (scores, Langevin dynamics, the probability-flow ODE). See
diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import math

import torch
from scipy.integrate import quad

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor


def _pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(5, 2, generator=gen, dtype=torch.float64), torch.randn(5, 2, generator=gen, dtype=torch.float64)


@exercise("7.1")
def check_score_from_eps(score_from_eps) -> None:
    """Exercise 7.1: the score from a noise prediction, eq. (7.2)."""
    eps, _ = _pair(1)
    alpha_bar = 0.36  # sqrt(1 - alpha_bar) = 0.8
    result = expect_tensor(score_from_eps(eps, alpha_bar), (5, 2), "the score").double()
    if torch.allclose(result, eps / 0.8):
        raise ExerciseError("check the sign: the score points back towards the data, against the noise that was added")
    if torch.allclose(result, -eps / 0.64):
        raise ExerciseError("divide by the standard deviation of the noise, sqrt(1 - alpha_bar), not by its variance")
    if torch.allclose(result, -eps * 0.8):
        raise ExerciseError("(7.2) divides by sqrt(1 - alpha_bar); multiplying gives eps from the score, the other way round")
    expect_close(result, -eps / 0.8, "score = -eps / sqrt(1 - alpha_bar)")


@exercise("7.2")
def check_langevin_step(langevin_step) -> None:
    """Exercise 7.2: one step of Langevin dynamics, eq. (7.3)."""
    x, noise = _pair(2)
    score = -x / 0.25
    step_size = 0.01
    result = expect_tensor(langevin_step(x, score, step_size, noise), (5, 2), "the new x").double()
    if torch.allclose(result, x + step_size * score + math.sqrt(step_size) * noise):
        raise ExerciseError("the score term has a factor 1/2: x + (step_size / 2) * score + ...")
    if torch.allclose(result, x + 0.5 * step_size * score + step_size * noise):
        raise ExerciseError("the noise is scaled by sqrt(step_size): its variance, not its size, is step_size")
    if torch.allclose(result, x + 0.5 * step_size * score):
        raise ExerciseError("without the noise term this is gradient ascent: it collapses onto the modes")
    expect_close(result, x + 0.5 * step_size * score + math.sqrt(step_size) * noise,
                 "x + (step_size / 2) * score + sqrt(step_size) * noise")


def _flow_factor(s: float, sigma_start: float) -> float:
    """x_bar(0) / x_bar(sigma_start) for d x_bar / d sigma = sigma x_bar / (s^2 + sigma^2), by quadrature:
    log x_bar changes by the integral of sigma / (s^2 + sigma^2) over sigma."""
    integral, _ = quad(lambda sigma: sigma / (s**2 + sigma**2), 0.0, sigma_start)
    return math.exp(-integral)


@exercise("7.3")
def check_flow_factor(answer) -> None:
    """Exercise 7.3: d x_bar / d sigma = sigma x_bar / (s^2 + sigma^2) from sigma = 2 to 0, s = 0.5."""
    answer = expect_number(answer, "the factor")
    s, sigma_start = 0.5, 2.0
    expected = _flow_factor(s, sigma_start)
    if abs(answer - expected) <= 3e-3:  # two or three figures, rounded by hand, are fine
        return
    if abs(answer - 1 / expected) < 3e-3:
        raise ExerciseError("that is the factor from sigma = 0 up to sigma = 2; the flow runs the other way, towards the data")
    if abs(answer - s / sigma_start) < 3e-3:
        raise ExerciseError("s / sigma is the answer for sigma much larger than s; solve the equation exactly")
    if abs(answer - expected**2) < 3e-3 or abs(answer - 1 / expected**2) < 3e-3:
        raise ExerciseError("the integral of sigma / (s^2 + sigma^2) is (1/2) log(s^2 + sigma^2): mind the 1/2")
    raise ExerciseError("separate the variables: d log x_bar = sigma d sigma / (s^2 + sigma^2) = d (1/2) log(s^2 + sigma^2)")
