"""Exercises of chapter 02 (the reverse process). See diffedu/exercises/__init__.py for how
checkers work.

    2.1  the posterior variance beta_tilde_t for a whole schedule, eq. (2.3)
    2.2  the exact noise predictor eps* when the data are one Gaussian N(mu, s^2 I), eq. (2.10)
    2.3  v-prediction: recover pred_x0 and eps from v, with the algebra of eq. (2.4)
"""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor
from diffedu.schedules import cosine_betas, linear_betas


def _alpha_bars(betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    alpha_bar = torch.cumprod(1 - betas, dim=0)  # eq. (1.4)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=betas.dtype), alpha_bar[:-1]])  # alpha_bar_{t-1}; alpha_bar_0 = 1
    return alpha_bar, alpha_bar_prev


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=1e-12))


@exercise("2.1")
def check_posterior_variance(posterior_variance) -> None:
    """Exercise 2.1: posterior_variance(betas (T,) float64) -> beta_tilde (T,), eq. (2.3)."""
    for betas in (linear_betas(1000), cosine_betas(50)):
        result = expect_tensor(posterior_variance(betas.clone()), betas.shape, "beta_tilde")
        alpha_bar, alpha_bar_prev = _alpha_bars(betas)
        expected = (1 - alpha_bar_prev) / (1 - alpha_bar) * betas
        if _close(result, expected):
            continue
        if _close(result, betas):
            raise ExerciseError(
                "you returned beta_t itself (or used alpha_bar_t where alpha_bar_{t-1} belongs). beta_t is the "
                "'large' choice sigma_t^2 = beta_t; the posterior "
                "q(x_{t-1} | x_t, x_0) is narrower, because knowing x_0 removes uncertainty: multiply beta_t "
                "by (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)"
            )
        upside_down = (1 - alpha_bar[1:]) / (1 - alpha_bar_prev[1:]) * betas[1:]  # the first step would divide by 0
        if result.shape[0] > 1 and _close(result[1:], upside_down):
            raise ExerciseError("the ratio is upside down: beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t")
        if result.shape[0] > 1 and _close(result[1:], expected[1:]) and not _close(result[:1], expected[:1]):
            raise ExerciseError(
                f"every entry but the first is right (you have {result[0].item():.3g} there). Code index 0 is the "
                "paper's t = 1, and the step before it is the clean data: alpha_bar_0 = 1, so beta_tilde_1 = 0 "
                "(torch.roll wraps the last alpha_bar round to the front; use torch.cat([torch.ones(1), alpha_bar[:-1]]))"
            )
        raise ExerciseError(
            "not quite. Build alpha_bar = cumprod(1 - betas) (1.4) and alpha_bar_prev = alpha_bar shifted one "
            "step later, with alpha_bar_0 = 1 in front; then beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * betas"
        )


def _gaussian_eps_star(x_t: torch.Tensor, alpha_bar: float, mu: torch.Tensor, s: float) -> torch.Tensor:
    """The expected answer of exercise 2.2, in float64."""
    variance = alpha_bar * s**2 + 1 - alpha_bar
    return math.sqrt(1 - alpha_bar) * (x_t.double() - math.sqrt(alpha_bar) * mu.double()) / variance


@exercise("2.2")
def check_gaussian_eps_star(eps_star) -> None:
    """Exercise 2.2: eps_star(x_t (n, 2), alpha_bar float, mu (2,), s float) -> (n, 2)."""
    gen = torch.Generator().manual_seed(22)
    x_t = torch.randn(64, 2, generator=gen, dtype=torch.float64) * 1.5
    mu = torch.tensor([0.7, -1.2], dtype=torch.float64)
    for alpha_bar, s in ((0.5, 0.3), (0.05, 2.0), (0.97, 0.5)):
        result = expect_tensor(eps_star(x_t.clone(), alpha_bar, mu.clone(), s), x_t.shape, "eps*")
        expected = _gaussian_eps_star(x_t, alpha_bar, mu, s)
        if _close(result, expected):
            continue
        variance = alpha_bar * s**2 + 1 - alpha_bar
        score = -(x_t - math.sqrt(alpha_bar) * mu) / variance
        if _close(result, -expected):
            raise ExerciseError(
                "the sign is flipped. eps* points from the centre of q_t towards x_t (x_t = centre + noise), "
                "while the score points back towards the centre: eps* = -sqrt(1 - alpha_bar) * score, eq. (2.10)"
            )
        if _close(result, score) or _close(result, -score):
            raise ExerciseError(
                "that is (up to sign) the score grad log q_t(x_t). The best noise predictor is the score scaled "
                "by -sqrt(1 - alpha_bar), eq. (2.10)"
            )
        if _close(result, math.sqrt(1 - alpha_bar) * (x_t - math.sqrt(alpha_bar) * mu) / (1 - alpha_bar)):
            raise ExerciseError(
                "that would be right if every data point sat exactly at mu (s = 0). The data's own spread is "
                "noised too: q_t = N(sqrt(alpha_bar) mu, (alpha_bar s^2 + 1 - alpha_bar) I)"
            )
        if _close(result, math.sqrt(1 - alpha_bar) * (x_t - mu) / variance):
            raise ExerciseError("the centre of q_t is sqrt(alpha_bar) * mu, not mu: the forward process (1.5) shrinks the data")
        centred = x_t - math.sqrt(alpha_bar) * mu
        if _close(result, (1 - alpha_bar) * centred / variance):
            raise ExerciseError(
                "a square root is missing: eq. (2.10) scales the score by the noise's standard deviation "
                "sqrt(1 - alpha_bar), not by its variance 1 - alpha_bar"
            )
        if _close(result, math.sqrt(1 - alpha_bar) * (x_t - alpha_bar * mu) / variance):
            raise ExerciseError(
                "a square root is missing: (1.5) scales x_0 by sqrt(alpha_bar), so the centre of q_t is "
                "sqrt(alpha_bar) * mu, not alpha_bar * mu"
            )
        if _close(result, math.sqrt(1 - alpha_bar) * centred / (alpha_bar * s + 1 - alpha_bar)):
            raise ExerciseError(
                "s is the data's standard deviation, so its variance is s^2: q_t's variance is alpha_bar s^2 + 1 - alpha_bar"
            )
        if _close(result, math.sqrt(1 - alpha_bar) * centred / math.sqrt(variance)):
            raise ExerciseError(
                "the score of a Gaussian divides by its variance alpha_bar s^2 + 1 - alpha_bar, not by its standard "
                "deviation: grad log N(x; m, v I) = -(x - m) / v"
            )
        raise ExerciseError(
            "not quite. Under (1.5), x_t ~ N(sqrt(alpha_bar) mu, (alpha_bar s^2 + 1 - alpha_bar) I). Take the "
            "score of that Gaussian, then apply eq. (2.10)"
        )


def _v_setup(alpha_bar: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(23)
    x0 = torch.rand(32, 2, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps  # eq. (1.5)
    v = math.sqrt(alpha_bar) * eps - math.sqrt(1 - alpha_bar) * x0
    return x0, eps, x_t, v


@exercise("2.3")
def check_v_to_x0_and_eps(v_to_x0_and_eps) -> None:
    """Exercise 2.3: v_to_x0_and_eps(x_t, alpha_bar, v) -> (pred_x0, eps)."""
    for alpha_bar in (0.9, 0.3, 0.01):
        x0, eps, x_t, v = _v_setup(alpha_bar)
        result = v_to_x0_and_eps(x_t.clone(), alpha_bar, v.clone())
        if not isinstance(result, tuple) or len(result) != 2:
            raise ExerciseError(f"return a pair `return pred_x0, eps`, got {type(result).__name__}")
        pred_x0 = expect_tensor(result[0], x0.shape, "pred_x0")
        pred_eps = expect_tensor(result[1], eps.shape, "eps")
        if _close(pred_x0, eps) and _close(pred_eps, x0):
            raise ExerciseError("the two are swapped: return (pred_x0, eps), in that order")
        if not _close(pred_x0, x0):
            raise ExerciseError(
                "pred_x0 is off. (x_0, eps) -> (x_t, v) is a rotation by an angle phi with cos(phi) = "
                "sqrt(alpha_bar), sin(phi) = sqrt(1 - alpha_bar): x_t = cos x_0 + sin eps, v = cos eps - sin x_0. "
                "Rotate back: x_0 = cos x_t - sin v"
            )
        expect_close(
            pred_eps, eps,
            "with pred_x0 in hand, eq. (2.4) solved for the noise gives eps = (x_t - sqrt(alpha_bar) pred_x0) / "
            "sqrt(1 - alpha_bar); or rotate back directly: eps = sin x_t + cos v",
        )
