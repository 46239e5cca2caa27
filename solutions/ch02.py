"""Reference solutions of chapter 02's exercises (try first!). Checked by tests/test_exercises_ch02.py."""

import math

import torch

from diffedu.samplers import ddpm_sample, predict_x0_from_eps
from diffedu.schedules import make_schedule
from diffedu.toy import component_summary, exact_noise_predictor, make_toy_mixture


def solution_spread_ratio() -> float:
    schedule, mixture = make_schedule("linear"), make_toy_mixture()
    exact_model = exact_noise_predictor(mixture, schedule)
    spreads = {}
    for variance in ("small", "large"):  # sigma_t^2 = beta_tilde_t, then beta_t, from the same x_T and noise
        run = ddpm_sample(exact_model, (2_000, 2), schedule, generator=torch.Generator().manual_seed(4), variance=variance, progress=False)
        spreads[variance] = component_summary(mixture, run.samples).stds.mean().item()
    return spreads["large"] / spreads["small"]  # about 1.03: beta_t > beta_tilde_t adds a little spread in the last steps


def solution_gaussian_eps_star(x_t: torch.Tensor, alpha_bar: float, mu: torch.Tensor, s: float) -> torch.Tensor:
    variance = alpha_bar * s**2 + 1 - alpha_bar  # q_t = N(sqrt(alpha_bar) mu, variance I)
    score = -(x_t - math.sqrt(alpha_bar) * mu) / variance
    return -math.sqrt(1 - alpha_bar) * score  # eq. (2.10)


def solution_v_to_x0_and_eps(x_t: torch.Tensor, alpha_bar: float, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred_x0 = math.sqrt(alpha_bar) * x_t - math.sqrt(1 - alpha_bar) * v  # rotate (x_t, v) back by the angle phi
    eps = math.sqrt(1 - alpha_bar) * x_t + math.sqrt(alpha_bar) * v
    return pred_x0, eps


def solution_guided_ddim_step(x_t: torch.Tensor, k: int, k_prev: int, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float,
                              schedule) -> torch.Tensor:
    eps = eps_uncond + w * (eps_cond - eps_uncond)  # classifier-free guidance: w = 0 unconditional, w = 1 conditional
    pred_x0 = predict_x0_from_eps(x_t, k, eps, schedule)  # eq. (2.4), with the guided eps
    alpha_bar_prev = schedule.alpha_bar[k_prev] if k_prev >= 0 else torch.ones((), dtype=x_t.dtype)  # clean data: alpha_bar_0 = 1
    return alpha_bar_prev.sqrt() * pred_x0 + (1 - alpha_bar_prev).sqrt() * eps  # eq. (2.7), eta = 0: the same eps again
