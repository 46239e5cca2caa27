"""Exercises of chapter 01 (the forward process). See diffedu/exercises/__init__.py for how
checkers work.

Timesteps follow the course convention. Equations (and symbols such as alpha_t, alpha_bar_t)
use the papers' numbering t = 1..T, with x_0 the clean data and alpha_bar_0 = 1. Code arrays are
0-indexed: the paper's beta_t and alpha_bar_t are betas[t - 1] and alpha_bar[t - 1], and a code
timestep k (what library functions such as q_sample take) is the paper's t = k + 1. So betas[k]
is the variance of the noise added by code step k, and alpha_bar[k] is the fraction of x_0's
variance left after code steps 0..k. Clean data sits at code index -1, which is NOT alpha_bar[-1].
"""

from __future__ import annotations

import torch

from diffedu.exercises import (
    ExerciseError, exercise, expect_close, expect_tensor, expect_whole_number, reject_known_mistakes, same,
)
from diffedu.schedules import make_schedule, q_sample


def _as_column(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1), so that per-image constants multiply (B, 1, H, W) images."""
    return values.reshape(-1, 1, 1, 1)


def _call(function, *args) -> torch.Tensor:
    """Run the learner's function; turn the two classic indexing/broadcasting crashes into hints
    (any other exception becomes a one-line hint in the `exercise` decorator)."""
    try:
        return function(*args)
    except IndexError as error:
        raise ExerciseError(
            f"your function raised IndexError ({error}). Code timesteps k run from 0 to T-1, and betas[k] / "
            "alpha_bar[k] belong to code step k itself (the paper's step k + 1): no +1 is needed"
        ) from error
    except RuntimeError as error:
        if "must match the size" not in str(error):
            raise
        raise ExerciseError(
            f"a broadcasting error ({error}). betas[k] has shape (B,) but the images (B, 1, H, W): "
            "reshape the per-image coefficients to (B, 1, 1, 1), e.g. `.reshape(-1, 1, 1, 1)`, "
            "so that each multiplies all pixels of its own image"
        ) from error


@exercise("1.1")
def check_noising_step_batch(noising_step_batch) -> None:
    """Exercise 1.1: one step of eq. (1.2) for a batch, image i at its own code step k[i]
    (the paper's t = k[i] + 1):

    x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps,  alpha_t = 1 - betas[k]
    """
    generator = torch.Generator().manual_seed(11)
    x_prev = torch.randn(5, 1, 6, 6, generator=generator)  # (B, C, H, W), B != W on purpose
    noise = torch.randn(5, 1, 6, 6, generator=generator)
    k = torch.tensor([0, 3, 250, 998, 999])  # (B,) code timesteps
    for name in ("linear", "cosine"):
        betas = make_schedule(name).betas
        output = _call(noising_step_batch, x_prev.clone(), k.clone(), noise.clone(), betas.clone())
        result = expect_tensor(output, tuple(x_prev.shape), "x_t")
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas.double(), 0).float()
        beta_t, alpha_t = _as_column(betas[k]), _as_column(alphas[k])  # (B, 1, 1, 1) the paper's beta_t, alpha_t with t = k + 1
        expected = alpha_t.sqrt() * x_prev + beta_t.sqrt() * noise
        if same(result, expected):
            continue
        if not torch.isfinite(result).all():
            raise ExerciseError("your x_t holds NaN or inf: is something negative under a square root?")
        mistakes = [
            (alpha_t * x_prev + beta_t * noise,
             "the coefficients multiply x_{t-1} and eps, so they are standard deviations: sqrt(alpha_t) and "
             "sqrt(1 - alpha_t) = sqrt(beta_t), not the variances alpha_t and beta_t"),
            (alpha_t * x_prev + beta_t.sqrt() * noise,
             "the noise term is right, but x_{t-1} needs a square root too: its coefficient is the standard "
             "deviation sqrt(alpha_t), not alpha_t, so that the variances alpha_t + beta_t add up to 1"),
            (alpha_t.sqrt() * x_prev + beta_t * noise,
             "the x_{t-1} term is right, but the noise needs a square root too: its coefficient is the standard "
             "deviation sqrt(1 - alpha_t) = sqrt(beta_t), not the variance beta_t"),
            (x_prev + beta_t.sqrt() * noise,
             "shrink x_{t-1} by sqrt(alpha_t) before adding the noise: without the shrink the variance grows "
             "by beta_t at every step instead of being pulled towards 1 (section 1)"),
            (beta_t.sqrt() * x_prev + alpha_t.sqrt() * noise,
             "the two coefficients are swapped: x_{t-1} keeps sqrt(alpha_t) = sqrt(1 - beta_t), close to 1, "
             "and the noise gets the small sqrt(beta_t)"),
            (_as_column(alpha_bar[k]).sqrt() * x_prev + _as_column(1 - alpha_bar[k]).sqrt() * noise,
             "one step uses alpha_t = 1 - betas[k]; alpha_bar_t is for the jump from x_0 in one go, eq. (1.5)"),
            (_as_column(alphas[k - 1]).sqrt() * x_prev + _as_column(betas[k - 1]).sqrt() * noise,
             "off by one: in code, betas[k] is the variance of the noise added by code step k itself (0-indexed; "
             "the paper's beta_{k+1}), so use betas[k], not betas[k - 1]"),
        ]
        reject_known_mistakes(result, mistakes)
        expect_close(
            result, expected,
            hint="follow eq. (1.2): x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps with alpha_t = 1 - betas[k], "
            "one alpha_t per image, reshaped to (B, 1, 1, 1)",
        )


@exercise("1.2")
def check_skip_ahead(skip_ahead) -> None:
    """Exercise 1.2: sample from q(x_t | x_r) in one jump. In code indices: from x after code step
    k_from to x after code step k_to, -1 <= k_from < k_to <= T-1 (k_from = -1 is the clean x_0):

    x_to = sqrt(alpha_bar[k_to] / alpha_bar[k_from]) x_from + sqrt(1 - alpha_bar[k_to] / alpha_bar[k_from]) eps
    """
    schedule = make_schedule("linear")
    alpha_bar = schedule.alpha_bar  # (T,) float32
    last = schedule.num_train_timesteps - 1

    def alpha_bar_at(k: int) -> torch.Tensor:
        return alpha_bar[k] if k >= 0 else torch.ones(())  # clean data: the paper's alpha_bar_0 = 1

    def jump(x, noise, keep):  # sqrt(keep) x + sqrt(1 - keep) eps, or None where undefined
        if keep is None or not 0 < float(keep) <= 1:
            return None
        return keep.sqrt() * x + (1 - keep).sqrt() * noise

    generator = torch.Generator().manual_seed(12)
    for k_from, k_to in [(99, 499), (0, 999), (249, 250), (-1, 300), (-1, 0)]:
        x_from = torch.randn(3, 1, 6, 6, generator=generator)
        noise = torch.randn(3, 1, 6, 6, generator=generator)
        output = _call(skip_ahead, x_from.clone(), k_from, k_to, noise.clone(), alpha_bar.clone())
        result = expect_tensor(output, tuple(x_from.shape), "x_to")
        keep = alpha_bar[k_to] / alpha_bar_at(k_from)  # alphas[k_from + 1] * ... * alphas[k_to]
        expected = q_sample(x_from, k_to, noise, schedule) if k_from == -1 else jump(x_from, noise, keep)
        if same(result, expected):
            continue
        if k_from == -1 and (
            not torch.isfinite(result).all() or same(result, jump(x_from, noise, alpha_bar[k_to] / alpha_bar[last]))
        ):
            raise ExerciseError(
                "for k_from = -1: in Python alpha_bar[-1] is the LAST entry (the paper's alpha_bar_T, "
                "almost 0), not the clean data's alpha_bar_0 = 1. Handle k_from = -1 on its own: then x_from is the "
                "clean x_0 and the answer is eq. (1.5)"
            )
        where = f"k_from = {k_from}, k_to = {k_to}"
        if not torch.isfinite(result).all():
            raise ExerciseError(
                f"your x_to holds NaN or inf for {where}: the fraction of the variance kept must lie in (0, 1], "
                "so divide alpha_bar[k_to] by alpha_bar[k_from], not the other way round"
            )
        mistakes = [
            (jump(x_from, noise, alpha_bar[k_to]),
             "that is q(x_t | x_0), the jump from clean data. x_from has already been through code steps 0..k_from; "
             "only code steps k_from+1..k_to remain, and their alphas multiply to alpha_bar[k_to] / alpha_bar[k_from]"),
            (keep * x_from + (1 - keep) * noise,
             "the coefficients are standard deviations: take square roots of alpha_bar[k_to] / alpha_bar[k_from] and "
             "of 1 - alpha_bar[k_to] / alpha_bar[k_from]"),
            (keep.sqrt() * x_from + (1 - alpha_bar[k_to]).sqrt() * noise,
             "the noise variance is 1 - alpha_bar[k_to] / alpha_bar[k_from]: x_from already carries the noise of code "
             "steps 0..k_from; only the remaining steps add new noise (eq. 1.5 applied to them alone)"),
            (jump(x_from, noise, alpha_bar[k_to] / alpha_bar_at(k_from - 1)) if k_from >= 1 else None,
             "off by one: x_from is the sample AFTER code step k_from, so the remaining alphas are "
             "alphas[k_from + 1..k_to], whose product is alpha_bar[k_to] / alpha_bar[k_from] "
             "(not alpha_bar[k_to] / alpha_bar[k_from - 1])"),
            (jump(x_from, noise, alpha_bar[k_to - 1] / alpha_bar_at(k_from)) if k_to >= 1 else None,
             "off by one: the result is the sample after code step k_to, so it includes alphas[k_to]: use "
             "alpha_bar[k_to], not alpha_bar[k_to - 1]"),
        ]
        reject_known_mistakes(result, mistakes, opening=f"for {where}: ")
        expect_close(
            result, expected,
            hint=f"for {where}: the steps still to apply are code steps k_from+1..k_to; by the argument of eq. (1.5) "
            "they act like one step with alpha = alpha_bar[k_to] / alpha_bar[k_from]",
        )


@exercise("1.3")
def check_first_snr_below_one(answer) -> None:
    """Exercise 1.3: the first code index k (the paper's t = k + 1) at which the linear schedule's
    SNR, eq. (1.6), is below 1."""
    answer = expect_whole_number(answer, "a code timestep k")
    snr = make_schedule("linear").snr  # (T,)
    expected = int(torch.nonzero(snr < 1)[0])
    if answer == expected:
        return
    cosine_crossing = int(torch.nonzero(make_schedule("cosine").snr < 1)[0])
    if answer == expected + 1:
        raise ExerciseError(
            "that is the paper's step number t, which counts from 1. The code index k = t - 1 starts at 0, so "
            "subtract one"
        )
    if answer in (cosine_crossing, cosine_crossing + 1):
        raise ExerciseError("that is where the cosine schedule crosses SNR = 1: use make_schedule('linear')")
    if not 0 <= answer < snr.shape[0]:
        raise ExerciseError(f"code indices k run from 0 to {snr.shape[0] - 1}, got {answer}")
    if answer < expected:
        raise ExerciseError(
            f"at code index k = {answer} the SNR is still {snr[answer]:.4g}, not below 1: look later. SNR < 1 exactly "
            "when alpha_bar[k] < 1/2"
        )
    raise ExerciseError(
        f"at code index k = {answer} the SNR ({snr[answer]:.4g}) is below 1, but it is not the first such k: look earlier. "
        "A boolean mask `schedule.snr < 1` and `.nonzero()` (or `.int().argmax()`) find the first True"
    )
