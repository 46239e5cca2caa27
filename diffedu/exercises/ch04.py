"""Exercises of chapter 04 (the VAE and latent diffusion). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor
from diffedu.metrics import psnr
from diffedu.models.vae import kl_to_standard_normal


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    mean = torch.randn(3, 4, 7, 7, generator=gen)
    log_var = torch.randn(3, 4, 7, 7, generator=gen) - 1.0
    eps = torch.randn(3, 4, 7, 7, generator=gen)
    return mean, log_var, eps


@exercise("4.1")
def check_reparameterize(reparameterize) -> None:
    """Exercise 4.1: the reparameterisation trick, eq. (4.2)."""
    mean, log_var, eps = _inputs()
    mean, log_var = mean.requires_grad_(True), log_var.requires_grad_(True)
    result = expect_tensor(reparameterize(mean, log_var, eps), tuple(mean.shape), "z")
    if not result.requires_grad:
        raise ExerciseError("gradients must flow into mean and log_var: compute z from them with torch operations")
    grad_mean, grad_log_var = torch.autograd.grad(result.sum(), (mean, log_var), allow_unused=True)
    if grad_mean is None or grad_log_var is None or grad_mean.abs().sum() == 0 or grad_log_var.abs().sum() == 0:
        raise ExerciseError("gradients must reach both mean and log_var (no .detach(), no .item()): "
                            "that is the point of the trick")
    result, mean, log_var = result.detach(), mean.detach(), log_var.detach()
    if torch.allclose(result, mean + log_var.exp() * eps, atol=1e-5):
        raise ExerciseError("exp(log_var) is the variance; scale eps by the standard deviation exp(log_var / 2)")
    if torch.allclose(result, mean + log_var * eps, atol=1e-5):
        raise ExerciseError("log_var is a log-variance: the standard deviation is exp(log_var / 2)")
    expect_close(result, mean + torch.exp(0.5 * log_var) * eps, "z = mean + exp(log_var / 2) * eps")


@exercise("4.2")
def check_kl(kl) -> None:
    """Exercise 4.2: KL(q(z|x) || N(0, I)) per sample, eq. (4.3)."""
    mean, log_var, _ = _inputs()
    result = expect_tensor(kl(mean, log_var), (3,), "the KL per sample (one number per image, shape (B,))")
    expected = kl_to_standard_normal(mean, log_var)
    if torch.allclose(result, 2 * expected, rtol=1e-4):
        raise ExerciseError("missing the factor 1/2 in front of the sum")
    if torch.allclose(result, expected / mean[0].numel(), rtol=1e-4):
        raise ExerciseError("sum over the latent coordinates (the KL of independent coordinates adds up), don't average")
    expect_close(result, expected, "1/2 * sum over coordinates of (mean^2 + exp(log_var) - 1 - log_var)", rtol=1e-4)
    zero = kl(torch.zeros(2, 4, 7, 7), torch.zeros(2, 4, 7, 7))
    expect_close(zero, torch.zeros(2), "q = N(0, I) is the prior itself: the KL must be 0")


def _psnr_of_mse(mse: float) -> float:
    """The library's PSNR, eq. (4.6), of a reconstruction whose error on [0, 1] is the same at every pixel."""
    image = torch.zeros(1, 1, 4, 4)  # in [-1, 1], as diffedu.metrics.psnr expects
    off = image + 2 * math.sqrt(mse)  # [-1, 1] is twice as wide as [0, 1]
    return psnr(image, off).item()


@exercise("4.3")
def check_psnr_answer(answer) -> None:
    """Exercise 4.3: the PSNR of a reconstruction with mean squared error 0.004 on [0, 1]."""
    answer = expect_number(answer, "a number of dB")
    expected = _psnr_of_mse(0.004)
    if abs(answer - expected) <= 0.1:  # rounded by hand is fine
        return
    if abs(answer - 2 * expected) < 0.1:
        raise ExerciseError("PSNR is 10 log10(peak^2 / MSE): 10, not 20, when you start from the MSE (20 is for the RMSE)")
    if abs(answer - expected / 10) < 0.01:
        raise ExerciseError("decibels: multiply log10(1 / MSE) by 10")
    if abs(answer + expected) < 0.1:
        raise ExerciseError("the sign: PSNR is 10 log10(1 / MSE), positive for an error smaller than the peak")
    if abs(answer - _psnr_of_mse(0.004 / 4)) < 0.1:
        raise ExerciseError("that uses a peak of 2, as for images in [-1, 1]; this image and its MSE are on [0, 1], "
                            "so the peak is 1")
    raise ExerciseError("eq. (4.6): PSNR = 10 log10(1 / MSE) for images in [0, 1]")
