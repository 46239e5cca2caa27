"""Exercises of chapter 01 (the forward process). See diffedu/exercises/__init__.py for how
checkers work.

    1.1  skipping ahead: the two coefficients of q(x_t | x_r), the next step after eq. (1.5)
    1.2  the cosine schedule's betas from eq. (1.7), the piece the chapter takes from the library
    1.3  predict, then measure: where the SNR (1.6) of data scaled by c = 0.5 crosses 1

Timesteps follow the course convention. Equations (and symbols such as alpha_t, alpha_bar_t)
use the papers' numbering t = 1..T, with x_0 the clean data and alpha_bar_0 = 1. Code arrays are
0-indexed: the paper's beta_t and alpha_bar_t are betas[t - 1] and alpha_bar[t - 1], and a code
timestep k (what library functions such as q_sample take) is the paper's t = k + 1. Clean data
sits at code index -1, which is NOT alpha_bar[-1].
"""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_number, expect_tensor, expect_whole_number, same
from diffedu.schedules import cosine_betas, make_schedule

SCALE_1_3 = 0.5  # exercise 1.3: the data are multiplied by this factor before noising


def _reject(result: torch.Tensor, mistakes: list, formula: str, opening: str = "", **tolerance) -> None:
    """Raise the hint (an idea, not the answer) of the first typical mistake the result equals;
    the formula comes only after repeated wrong tries."""
    for candidate, hint in mistakes:
        if same(result, candidate, **tolerance):
            raise ExerciseError(f"{opening}{hint}", formula)


SKIP_FORMULA = ("signal_scale = sqrt(alpha_bar[k_to] / alpha_bar_from), noise_std = sqrt(1 - alpha_bar[k_to] / alpha_bar_from), "
                "with alpha_bar_from = alpha_bar[k_from], or 1 for k_from = -1 (clean data)")


def _as_pair(output) -> torch.Tensor:
    """The learner's (signal_scale, noise_std) as a float64 tensor of shape (2,), with a hint if it is not a pair of numbers."""
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        raise ExerciseError(f"return a pair `return signal_scale, noise_std`, got {type(output).__name__}")
    return torch.tensor([expect_number(value, "a coefficient") for value in output], dtype=torch.float64)


@exercise("1.1")
def check_skip_ahead(skip_ahead_coefficients) -> None:
    """Exercise 1.1: skip_ahead_coefficients(alpha_bar (T,), k_from, k_to) -> (signal_scale, noise_std), so that
    x_to = signal_scale * x_from + noise_std * eps samples q(x_t | x_r), with r = k_from + 1, t = k_to + 1
    (k_from = -1: x_from is the clean x_0)."""
    alpha_bar = make_schedule("linear").alpha_bar.double()  # (T,)
    last = alpha_bar.shape[0] - 1

    def alpha_bar_at(k: int) -> torch.Tensor:
        return alpha_bar[k] if k >= 0 else torch.ones((), dtype=torch.float64)  # clean data: alpha_bar_0 = 1

    def pair(keep) -> torch.Tensor | None:  # (sqrt(keep), sqrt(1 - keep)), or None where that is not a pair of reals
        if keep is None or not 0 < float(keep) <= 1:
            return None
        return torch.stack([keep.sqrt(), (1 - keep).sqrt()])

    for k_from, k_to in [(99, 499), (0, 999), (249, 250), (-1, 300), (-1, 0)]:
        output = skip_ahead_coefficients(alpha_bar.clone(), k_from, k_to)
        result = _as_pair(output)
        keep = alpha_bar[k_to] / alpha_bar_at(k_from)  # alphas[k_from + 1] * ... * alphas[k_to]
        if same(result, pair(keep), atol=1e-6, rtol=1e-5):
            continue
        where = f"for k_from = {k_from}, k_to = {k_to}: "
        if k_from == -1 and (not torch.isfinite(result).all() or same(result, pair(alpha_bar[k_to] / alpha_bar[last]))):
            raise ExerciseError(
                where + "in Python alpha_bar[-1] is the LAST entry (the paper's alpha_bar_T, almost 0), not the clean "
                "data's alpha_bar_0 = 1. Handle k_from = -1 on its own: then x_from is x_0 and the jump is eq. (1.5)", SKIP_FORMULA)
        if not torch.isfinite(result).all():
            raise ExerciseError(where + "NaN or inf: the fraction of the signal's variance that survives the jump lies in (0, 1]. "
                                "Which of the two alpha_bars is the smaller one?", SKIP_FORMULA)
        mistakes = [
            (pair(alpha_bar[k_to]),
             "that is the jump from clean data, q(x_t | x_0). x_from has already been through code steps 0..k_from: "
             "only the steps after it still have to be applied. What is the product of their alphas?"),
            (torch.stack([keep, 1 - keep]),
             "the coefficients multiply x_from and eps, so they are standard deviations, not variances"),
            (torch.stack([keep.sqrt(), (1 - alpha_bar[k_to]).sqrt()]),
             "the signal's coefficient is right, but x_from already carries the noise of its own steps: only the "
             "remaining steps add new noise, and the variances still add up to 1"),
            (pair(alpha_bar[k_to] / alpha_bar_at(k_from - 1)) if k_from >= 1 else None,
             "off by one: x_from is the sample AFTER code step k_from, so code step k_from is already done"),
            (pair(alpha_bar[k_to - 1] / alpha_bar_at(k_from)) if k_to >= 1 else None,
             "off by one: the result is the sample after code step k_to, so that step is included"),
        ]
        _reject(result, mistakes, SKIP_FORMULA, opening=where)
        raise ExerciseError(where + "write the remaining steps as one step, the way (1.3) merged two: the steps still to apply "
                            "are code steps k_from+1..k_to, and one step with alpha keeps sqrt(alpha) of its input", SKIP_FORMULA)


COSINE_FORMULA = ("f = cos((t / T + s) / (1 + s) * pi / 2) ** 2 for t = 0..T; betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)")


def _cosine_variant(num_steps: int, kind: str) -> torch.Tensor | None:
    """A typical wrong version of the cosine betas (float64), or the right one for kind == 'right'."""
    offset, max_beta = 0.008, 0.999
    paper_t = torch.arange(num_steps + 1, dtype=torch.float64)  # 0..T
    angle = (paper_t / num_steps + offset) / (1 + offset) * math.pi / 2

    def betas_from(f: torch.Tensor) -> torch.Tensor:
        return (1 - f[1:] / f[:-1]).clamp(max=max_beta)

    if kind == "no square":
        return betas_from(torch.cos(angle))
    if kind == "no offset":
        return betas_from(torch.cos(paper_t / num_steps * math.pi / 2) ** 2)
    f = torch.cos(angle) ** 2
    if kind == "not clipped":
        return 1 - f[1:] / f[:-1]
    if kind == "alpha_bar":
        return f[1:] / f[0]
    if kind == "alphas":
        return (f[1:] / f[:-1]).clamp(min=1 - max_beta)
    if kind == "inverted":
        return (1 - f[:-1] / f[1:]).clamp(max=max_beta)
    raise ValueError(kind)


@exercise("1.2")
def check_cosine_betas(cosine_schedule_betas) -> None:
    """Exercise 1.2: cosine_schedule_betas(T) -> betas (T,) of the cosine schedule, eq. (1.7), clipped at 0.999."""
    for num_steps in (1000, 50):
        output = cosine_schedule_betas(num_steps)
        if isinstance(output, torch.Tensor) and tuple(output.shape) == (num_steps + 1,):
            raise ExerciseError(f"you returned {num_steps + 1} values: f is evaluated at t = 0..T, but each beta_t compares "
                                "two neighbours, so there are T betas")
        result = expect_tensor(output, (num_steps,), "the betas")
        expected = cosine_betas(num_steps)  # float64
        if same(result, expected, atol=1e-6, rtol=1e-5):
            continue
        if not torch.isfinite(result).all():
            raise ExerciseError("your betas hold NaN or inf: f(T) is 0, so only divide by f at t = 0..T-1", COSINE_FORMULA)
        mistakes = [
            (_cosine_variant(num_steps, "not clipped"),
             "every beta is right but the last: f(T) = 0 makes beta_T = 1, and chapter 02's reverse step divides by "
             "sqrt(alpha_T). Clip the betas at max_beta = 0.999"),
            (_cosine_variant(num_steps, "alpha_bar"),
             "those are the alpha_bars of (1.7). The betas follow from (1.4): each alpha_t is the ratio of two "
             "neighbouring alpha_bars"),
            (_cosine_variant(num_steps, "alphas"),
             "those are the alphas, the fraction each step keeps; beta_t = 1 - alpha_t is what the step adds"),
            (_cosine_variant(num_steps, "inverted"),
             "the ratio is upside down: alpha_bar falls with t, so alpha_t = alpha_bar_t / alpha_bar_{t-1} is below 1"),
            (_cosine_variant(num_steps, "no square"),
             "(1.7) squares the cosine: f(t) = cos^2(...)"),
            (_cosine_variant(num_steps, "no offset"),
             "the offset s = 0.008 is missing: it shifts t / T inside the cosine, and 1 + s divides it"),
        ]
        _reject(result, mistakes, COSINE_FORMULA, atol=1e-6, rtol=1e-5)
        worst = (result.double() - expected).abs().max().item()
        raise ExerciseError(f"your betas are off by up to {worst:.3g}. Evaluate f of (1.7) at the paper's t = 0, 1, ..., T "
                            "(t / T from 0 to 1), then turn the alpha_bars into betas with (1.4)", COSINE_FORMULA)


def first_below_one(snr: torch.Tensor) -> int:
    """The first code index k at which snr[k] < 1."""
    return int(torch.nonzero(snr < 1)[0])


@exercise("1.3")
def check_scaled_snr_crossing(answer) -> None:
    """Exercise 1.3: the first code index k at which the linear schedule's SNR for data scaled by c = SCALE_1_3
    is below 1 (the paper's t = k + 1)."""
    answer = expect_whole_number(answer, "a code timestep k")
    snr = make_schedule("linear").snr.double()  # (T,) eq. (1.6), for data of variance 1
    expected = first_below_one(SCALE_1_3**2 * snr)
    if answer == expected:
        return
    formula = f"the first k with c^2 * alpha_bar[k] / (1 - alpha_bar[k]) < 1, c = {SCALE_1_3}: e.g. (c**2 * schedule.snr < 1).nonzero()[0]"
    if answer == expected + 1:
        raise ExerciseError("that is the paper's step number t, which counts from 1. The code index k = t - 1 starts at 0")
    if answer == first_below_one(snr):
        raise ExerciseError("that is where unscaled data (c = 1) cross SNR = 1. The signal term of (1.5) is now sqrt(alpha_bar) c x_0: "
                            "what does c do to its variance?", formula)
    if answer == first_below_one(SCALE_1_3 * snr):
        raise ExerciseError("the SNR is a ratio of variances: scaling x_0 by c scales its variance by c^2, not c", formula)
    if answer == first_below_one(snr / SCALE_1_3**2):
        raise ExerciseError("scaling the data down makes the signal weaker, so the noise wins earlier, not later", formula)
    if answer in (first_below_one(SCALE_1_3**2 * make_schedule("cosine").snr), first_below_one(make_schedule("cosine").snr)):
        raise ExerciseError("that is the cosine schedule: use make_schedule('linear')", formula)
    if not 0 <= answer < snr.shape[0]:
        raise ExerciseError(f"code indices k run from 0 to {snr.shape[0] - 1}, got {answer}")
    scaled = SCALE_1_3**2 * snr[answer]
    if answer < expected:
        raise ExerciseError(f"at code index k = {answer} the scaled data's SNR is still {scaled:.4g}: look later", formula)
    raise ExerciseError(f"at code index k = {answer} the scaled data's SNR ({scaled:.4g}) is below 1, but it is not the first "
                        "such k: look earlier", formula)
