"""Exercises of chapter 01 (the forward process). See diffedu/exercises/__init__.py for how
checkers work.

Timesteps are 0-indexed as in the library: betas[t] is the noise added at step t, and
alpha_bar[t] is the signal kept after steps 0..t (alpha_bar_{-1} = 1 means "no step yet").
"""

from __future__ import annotations

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor, require_answer
from diffedu.schedules import make_schedule, q_sample


def _as_column(values: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1), so that per-image constants multiply (B, 1, H, W) images."""
    return values.reshape(-1, 1, 1, 1)


def _same(result: torch.Tensor, candidate: torch.Tensor | None) -> bool:
    return candidate is not None and torch.allclose(result.double(), candidate.double(), atol=1e-5, rtol=1e-4)


def _call(function, *args) -> torch.Tensor:
    """Run the learner's function; turn the two classic indexing/broadcasting crashes into hints."""
    try:
        return function(*args)
    except IndexError as error:
        raise ExerciseError(
            f"your function raised IndexError ({error}). Timesteps run from 0 to T-1 and betas[t] / "
            "alpha_bar[t] belong to step t itself: no +1 is needed"
        ) from error
    except RuntimeError as error:
        if "must match the size" not in str(error):
            raise
        raise ExerciseError(
            f"a broadcasting error ({error}). betas[t] has shape (B,) but the images (B, 1, H, W): "
            "reshape the per-image coefficients to (B, 1, 1, 1), e.g. `.reshape(-1, 1, 1, 1)`, "
            "so that each multiplies all pixels of its own image"
        ) from error


@exercise("1.1")
def check_noising_step_batch(noising_step_batch) -> None:
    """Exercise 1.1: one step of eq. (1.2) for a batch, image i at its own timestep t[i]:

    x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps,  alpha_t = 1 - betas[t]
    """
    generator = torch.Generator().manual_seed(11)
    x_prev = torch.randn(5, 1, 6, 6, generator=generator)  # (B, C, H, W), B != W on purpose
    noise = torch.randn(5, 1, 6, 6, generator=generator)
    t = torch.tensor([0, 3, 250, 998, 999])  # (B,)
    for name in ("linear", "cosine"):
        betas = make_schedule(name).betas
        output = _call(noising_step_batch, x_prev.clone(), t.clone(), noise.clone(), betas.clone())
        result = expect_tensor(output, tuple(x_prev.shape), "x_t")
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas.double(), 0).float()
        beta_t, alpha_t = _as_column(betas[t]), _as_column(alphas[t])  # (B, 1, 1, 1)
        expected = alpha_t.sqrt() * x_prev + beta_t.sqrt() * noise
        if _same(result, expected):
            continue
        if not torch.isfinite(result).all():
            raise ExerciseError("your x_t holds NaN or inf: is something negative under a square root?")
        mistakes = [
            (alpha_t * x_prev + beta_t * noise,
             "the coefficients multiply x_{t-1} and eps, so they are standard deviations: sqrt(alpha_t) and "
             "sqrt(1 - alpha_t) = sqrt(beta_t), not the variances alpha_t and beta_t"),
            (x_prev + beta_t.sqrt() * noise,
             "shrink x_{t-1} by sqrt(alpha_t) before adding the noise: without the shrink the variance grows "
             "by beta_t at every step instead of staying 1 (section 1)"),
            (beta_t.sqrt() * x_prev + alpha_t.sqrt() * noise,
             "the two coefficients are swapped: x_{t-1} keeps sqrt(alpha_t) = sqrt(1 - beta_t), close to 1, "
             "and the noise gets the small sqrt(beta_t)"),
            (_as_column(alpha_bar[t]).sqrt() * x_prev + _as_column(1 - alpha_bar[t]).sqrt() * noise,
             "one step uses alpha_t = 1 - betas[t]; alpha_bar_t is for the jump from x_0 in one go, eq. (1.5)"),
            (_as_column(alphas[t - 1]).sqrt() * x_prev + _as_column(betas[t - 1]).sqrt() * noise,
             "off by one: in code, betas[t] is the variance of the noise added at step t itself (0-indexed), "
             "so use betas[t], not betas[t - 1]"),
        ]
        for candidate, hint in mistakes:
            if _same(result, candidate):
                raise ExerciseError(f"not quite. Hint: {hint}")
        expect_close(
            result, expected,
            hint="follow eq. (1.2): x_t = sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps with alpha_t = 1 - betas[t], "
            "one alpha_t per image, reshaped to (B, 1, 1, 1)",
        )


@exercise("1.2")
def check_skip_ahead(skip_ahead) -> None:
    """Exercise 1.2: sample x_t ~ q(x_t | x_s) for -1 <= s < t <= T-1 (0-indexed; s = -1 is x_0):

    x_t = sqrt(alpha_bar_t / alpha_bar_s) x_s + sqrt(1 - alpha_bar_t / alpha_bar_s) eps
    """
    schedule = make_schedule("linear")
    alpha_bar = schedule.alpha_bar  # (T,) float32
    last = schedule.num_steps - 1

    def alpha_bar_at(step: int) -> torch.Tensor:
        return alpha_bar[step] if step >= 0 else torch.ones(())  # alpha_bar_{-1} = 1

    def jump(x, noise, keep):  # sqrt(keep) x + sqrt(1 - keep) eps, or None where undefined
        if keep is None or not 0 < float(keep) <= 1:
            return None
        return keep.sqrt() * x + (1 - keep).sqrt() * noise

    generator = torch.Generator().manual_seed(12)
    for s, t in [(99, 499), (0, 999), (249, 250), (-1, 300), (-1, 0)]:
        x_s = torch.randn(3, 1, 6, 6, generator=generator)
        noise = torch.randn(3, 1, 6, 6, generator=generator)
        result = expect_tensor(_call(skip_ahead, x_s.clone(), s, t, noise.clone(), alpha_bar.clone()), tuple(x_s.shape), "x_t")
        keep = alpha_bar[t] / alpha_bar_at(s)  # alpha_{s+1} * ... * alpha_t
        expected = q_sample(x_s, t, noise, schedule) if s == -1 else jump(x_s, noise, keep)
        if _same(result, expected):
            continue
        if s == -1 and (not torch.isfinite(result).all() or _same(result, jump(x_s, noise, alpha_bar[t] / alpha_bar[last]))):
            raise ExerciseError(
                "not quite for s = -1. Hint: in Python alpha_bar[-1] is the LAST entry (alpha_bar_{T-1}, almost 0), "
                "not alpha_bar_{-1} = 1. Handle s = -1 on its own: then x_s is the clean x_0 and the answer is eq. (1.5)"
            )
        if not torch.isfinite(result).all():
            raise ExerciseError(
                f"your x_t holds NaN or inf for s = {s}, t = {t}: the fraction of signal kept must lie in (0, 1], "
                "so divide alpha_bar_t by alpha_bar_s, not the other way round"
            )
        mistakes = [
            (jump(x_s, noise, alpha_bar[t]),
             "that is q(x_t | x_0), the jump from clean data. x_s has already been through steps 0..s; only "
             "steps s+1..t remain, and their alphas multiply to alpha_bar_t / alpha_bar_s"),
            (keep * x_s + (1 - keep) * noise,
             "the coefficients are standard deviations: take square roots of alpha_bar_t / alpha_bar_s and of "
             "1 - alpha_bar_t / alpha_bar_s"),
            (keep.sqrt() * x_s + (1 - alpha_bar[t]).sqrt() * noise,
             "the noise variance is 1 - alpha_bar_t / alpha_bar_s: x_s already carries the noise of steps 0..s; "
             "only the remaining steps add new noise (eq. 1.5 applied to them alone)"),
            (jump(x_s, noise, alpha_bar[t] / alpha_bar_at(s - 1)) if s >= 1 else None,
             "off by one: x_s is the sample AFTER step s, so the remaining alphas are alpha_{s+1}..alpha_t, whose "
             "product is alpha_bar_t / alpha_bar_s (not alpha_bar_t / alpha_bar_{s-1})"),
            (jump(x_s, noise, alpha_bar[t - 1] / alpha_bar_at(s)) if t >= 1 else None,
             "off by one: x_t is the sample after step t, so it includes alpha_t: use alpha_bar[t], not alpha_bar[t - 1]"),
        ]
        for candidate, hint in mistakes:
            if _same(result, candidate):
                raise ExerciseError(f"not quite for s = {s}, t = {t}. Hint: {hint}")
        expect_close(
            result, expected,
            hint=f"for s = {s}, t = {t}: the steps still to apply are s+1..t; by the argument of eq. (1.5) they act "
            "like one step with alpha = alpha_bar_t / alpha_bar_s",
        )


@exercise("1.3")
def check_first_snr_below_one(answer) -> None:
    """Exercise 1.3: the first (0-indexed) t at which the linear schedule's SNR(t), eq. (1.6), is below 1."""
    require_answer(answer)
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1:
            raise ExerciseError(f"answer one timestep (an int), got a tensor of shape {tuple(answer.shape)}")
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not float(answer).is_integer():
        raise ExerciseError(f"a timestep is a whole number such as 17, got {answer!r}")
    answer = int(answer)
    snr = make_schedule("linear").snr  # (T,)
    expected = int(torch.nonzero(snr < 1)[0])
    if answer == expected:
        return
    cosine_crossing = int(torch.nonzero(make_schedule("cosine").snr < 1)[0])
    if answer == expected + 1:
        raise ExerciseError(
            "that is the paper's step number, which counts from 1. In code the first step is t = 0, so "
            "subtract one"
        )
    if answer in (cosine_crossing, cosine_crossing + 1):
        raise ExerciseError("that is where the cosine schedule crosses SNR = 1: use make_schedule('linear')")
    if not 0 <= answer < snr.shape[0]:
        raise ExerciseError(f"timesteps run from 0 to {snr.shape[0] - 1}, got {answer}")
    if answer < expected:
        raise ExerciseError(
            f"at t = {answer} the SNR is still {snr[answer]:.4g}, not below 1: look later. SNR(t) < 1 exactly "
            "when alpha_bar_t < 1/2"
        )
    raise ExerciseError(
        f"at t = {answer} the SNR ({snr[answer]:.4g}) is below 1, but it is not the first such t: look earlier. "
        "A boolean mask `schedule.snr < 1` and `.nonzero()` (or `.int().argmax()`) find the first True"
    )


# Reference solutions (try first!)


def solution_noising_step_batch(x_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    alpha_t = (1 - betas[t]).reshape(-1, *[1] * (x_prev.ndim - 1))  # (B, 1, 1, 1)
    return alpha_t.sqrt() * x_prev + (1 - alpha_t).sqrt() * noise  # eq. (1.2)


def solution_skip_ahead(x_s: torch.Tensor, s: int, t: int, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    alpha_bar_s = alpha_bar[s] if s >= 0 else torch.ones((), dtype=alpha_bar.dtype)  # alpha_bar_{-1} = 1
    keep = alpha_bar[t] / alpha_bar_s  # alpha_{s+1} * ... * alpha_t
    return keep.sqrt() * x_s + (1 - keep).sqrt() * noise


SOLUTION_1_3 = 259
