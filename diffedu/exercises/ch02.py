"""Exercises of chapter 02 (the reverse process). See diffedu/exercises/__init__.py for how
checkers work.

    2.1  predict, then measure: DDPM with sigma_t^2 = beta_t instead of beta_tilde_t, eq. (2.6)
    2.2  the exact noise predictor eps* when the data are one Gaussian N(mu, s^2 I), eq. (2.10)
    2.3  v-prediction: recover pred_x0 and eps from v, with the algebra of eq. (2.4)
    2.4  a guided DDIM step: classifier-free guidance inside eqs. (2.4) and (2.7), eta = 0
"""

from __future__ import annotations

import functools
import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor
from diffedu.samplers import ddim_step, ddpm_sample
from diffedu.schedules import make_schedule
from diffedu.toy import component_summary, exact_noise_predictor, make_toy_mixture

SPREAD_SAMPLES, SPREAD_SEED = 2_000, 4  # exercise 2.1: points per run, and the seed of both runs


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=1e-12))


@functools.lru_cache(maxsize=1)
def spread_ratios() -> dict[str, float]:
    """Exercise 2.1's measurement, made once: DDPM with the exact eps* of the toy mixture, sigma_t^2 = beta_t
    ("large") and beta_tilde_t ("small") from the same seed; each blob's spread, averaged over the blobs."""
    schedule, mixture = make_schedule("linear"), make_toy_mixture()
    model = exact_noise_predictor(mixture, schedule)
    spreads, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # 2-D points: one thread is fastest, and stays fast on a busy machine
    try:
        for variance in ("small", "large"):
            run = ddpm_sample(model, (SPREAD_SAMPLES, 2), schedule, generator=torch.Generator().manual_seed(SPREAD_SEED),
                              variance=variance, progress=False)
            spreads[variance] = component_summary(mixture, run.samples).stds.double()  # (M,)
    finally:
        torch.set_num_threads(threads)
    return dict(ratio=(spreads["large"].mean() / spreads["small"].mean()).item(),
                ratio_per_blob=(spreads["large"] / spreads["small"]).mean().item(),
                small=spreads["small"].mean().item(), large=spreads["large"].mean().item())


@exercise("2.1")
def check_spread_ratio(answer) -> None:
    """Exercise 2.1: the blobs' mean spread with sigma_t^2 = beta_t divided by that with beta_tilde_t (DDPM, exact eps*,
    SPREAD_SAMPLES points, seed SPREAD_SEED for both runs)."""
    value = expect_number(answer, "a ratio of two spreads")
    measured = spread_ratios()
    formula = ("large = ddpm_sample(exact_model, (2000, 2), schedule, generator=torch.Generator().manual_seed(4), "
               "variance='large'); the same with variance='small'; ratio = component_summary(mixture, large.samples)"
               ".stds.mean() / component_summary(mixture, small.samples).stds.mean()")
    if min(abs(value - measured["ratio"]), abs(value - measured["ratio_per_blob"])) < 2e-3:
        return
    if abs(value - 1) < 1e-6:
        raise ExerciseError("exactly 1: both runs used the same sigma_t. Pass variance='large' to one of them", formula)
    if abs(value - 1 / measured["ratio"]) < 2e-3:
        raise ExerciseError("that is the ratio upside down: divide the spread with sigma_t^2 = beta_t (variance='large') by "
                            "the one with beta_tilde_t (variance='small')", formula)
    if abs(value - measured["ratio"] ** 2) < 4e-3:
        raise ExerciseError("that is a ratio of variances: compare the spreads, the standard deviations that "
                            "component_summary reports", formula)
    if any(abs(value - measured[key]) < 2e-3 for key in ("small", "large")) or 0.05 < value < 0.5:
        raise ExerciseError("that looks like one run's spread (the true one is 0.15): divide the two runs' spreads", formula)
    raise ExerciseError(f"not the ratio these runs give. Use {SPREAD_SAMPLES} points and seed {SPREAD_SEED} for both runs, so "
                        "that they start from the same x_T and differ only in sigma_t", formula)


def _gaussian_eps_star(x_t: torch.Tensor, alpha_bar: float, mu: torch.Tensor, s: float) -> torch.Tensor:
    """The expected answer of exercise 2.2, in float64."""
    variance = alpha_bar * s**2 + 1 - alpha_bar
    return math.sqrt(1 - alpha_bar) * (x_t.double() - math.sqrt(alpha_bar) * mu.double()) / variance


GAUSSIAN_FORMULA = ("eps* = sqrt(1 - alpha_bar) (x_t - sqrt(alpha_bar) mu) / (alpha_bar s^2 + 1 - alpha_bar), "
                    "i.e. -sqrt(1 - alpha_bar) times the score of N(sqrt(alpha_bar) mu, (alpha_bar s^2 + 1 - alpha_bar) I)")


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
        centred = x_t - math.sqrt(alpha_bar) * mu
        score = -centred / variance
        mistakes = [
            (-expected, "the sign is flipped. eps* points from the centre of q_t towards x_t (x_t = centre + noise), "
             "while the score points back towards the centre"),
            (score, "that is the score grad log q_t(x_t) itself: eq. (2.10) turns it into a noise prediction"),
            (-score, "that is (minus) the score: eq. (2.10) also scales it, by the noise's standard deviation"),
            (math.sqrt(1 - alpha_bar) * centred / (1 - alpha_bar),
             "that would be right if every data point sat exactly at mu (s = 0). The data's own spread is noised too"),
            (math.sqrt(1 - alpha_bar) * (x_t - mu) / variance,
             "the centre of q_t is not mu: the forward process (1.5) shrinks the data"),
            ((1 - alpha_bar) * centred / variance,
             "eq. (2.10) scales the score by the noise's standard deviation, not by its variance"),
            (math.sqrt(1 - alpha_bar) * (x_t - alpha_bar * mu) / variance,
             "look at how (1.5) scales x_0: by a square root"),
            (math.sqrt(1 - alpha_bar) * centred / (alpha_bar * s + 1 - alpha_bar),
             "s is the data's standard deviation: what is its variance?"),
            (math.sqrt(1 - alpha_bar) * centred / math.sqrt(variance),
             "the score of a Gaussian divides by its variance, not by its standard deviation: grad log N(x; m, v I) = -(x - m) / v"),
        ]
        for candidate, hint in mistakes:
            if _close(result, candidate):
                raise ExerciseError(hint, GAUSSIAN_FORMULA)
        raise ExerciseError("not quite. Under (1.5), what are the mean and variance of x_t when x_0 ~ N(mu, s^2 I)? "
                            "Take the score of that Gaussian, then apply eq. (2.10)", GAUSSIAN_FORMULA)


def _v_setup(alpha_bar: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(23)
    x0 = torch.rand(32, 2, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps  # eq. (1.5)
    v = math.sqrt(alpha_bar) * eps - math.sqrt(1 - alpha_bar) * x0
    return x0, eps, x_t, v


V_FORMULA = "pred_x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v, eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v"


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
                "pred_x0 is off. With cos(phi) = sqrt(alpha_bar) and sin(phi) = sqrt(1 - alpha_bar), (x_0, eps) -> (x_t, v) "
                "is a rotation by phi. How do you undo a rotation?", V_FORMULA)
        expect_close(pred_eps, eps, "with pred_x0 in hand, solve (1.5) for the noise, as (2.4) solved it for x_0; or rotate "
                     "back directly", formula=V_FORMULA)


GUIDED_FORMULA = ("eps = eps_uncond + w (eps_cond - eps_uncond); pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t); "
                  "x_prev = sqrt(alpha_bar_prev) pred_x0 + sqrt(1 - alpha_bar_prev) eps, with alpha_bar_prev = 1 for k_prev = -1")


def _ddim(x_t: torch.Tensor, k: int, k_prev: int, eps_for_x0: torch.Tensor, eps_for_direction: torch.Tensor, schedule,
          alpha_bar_prev: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (2.7) with eta = 0, where x0's eps and the direction's eps may differ (typical mistakes)."""
    alpha_bar = schedule.alpha_bar[k].double()
    if alpha_bar_prev is None:
        alpha_bar_prev = schedule.alpha_bar[k_prev].double() if k_prev >= 0 else torch.ones((), dtype=torch.float64)
    pred_x0 = (x_t.double() - (1 - alpha_bar).sqrt() * eps_for_x0.double()) / alpha_bar.sqrt()
    return alpha_bar_prev.sqrt() * pred_x0 + (1 - alpha_bar_prev).sqrt() * eps_for_direction.double()


@exercise("2.4")
def check_guided_ddim_step(guided_ddim_step) -> None:
    """Exercise 2.4: guided_ddim_step(x_t, k, k_prev, eps_cond, eps_uncond, w, schedule) -> x_prev (n, 2), eta = 0."""
    schedule = make_schedule("linear")
    gen = torch.Generator().manual_seed(24)
    x_t = torch.randn(64, 2, generator=gen)  # (n, 2)
    eps_cond, eps_uncond = torch.randn(64, 2, generator=gen), torch.randn(64, 2, generator=gen)  # (n, 2) each
    for k, k_prev, w in ((500, 480, 3.0), (980, 960, 0.0), (300, 200, 1.0), (40, 20, 2.0), (20, -1, 3.0)):
        output = guided_ddim_step(x_t.clone(), k, k_prev, eps_cond.clone(), eps_uncond.clone(), w, schedule)
        result = expect_tensor(output, tuple(x_t.shape), "x_prev")
        guided = eps_uncond + w * (eps_cond - eps_uncond)
        expected = ddim_step(x_t, k, k_prev, guided, schedule).prev_sample
        if _close(result, expected, rtol=1e-4) or torch.allclose(result.double(), expected.double(), atol=1e-5):
            continue
        where = f"for k = {k}, k_prev = {k_prev}, w = {w:g}: "
        if not torch.isfinite(result).all():
            raise ExerciseError(where + "NaN or inf. Is something negative under a square root?", GUIDED_FORMULA)
        mistakes = [
            (_ddim(x_t, k, k_prev, eps_cond + w * (eps_uncond - eps_cond), eps_cond + w * (eps_uncond - eps_cond), schedule),
             "the guidance points the wrong way: w = 0 must give the unconditional prediction and w = 1 the conditional one"),
            (_ddim(x_t, k, k_prev, w * eps_cond, w * eps_cond, schedule),
             "scaling the conditional prediction by w is not guidance: guidance moves from the unconditional prediction "
             "towards (and, for w > 1, past) the conditional one"),
            (_ddim(x_t, k, k_prev, guided, eps_cond, schedule),
             "pred_x0 is guided, but the direction term of (2.7) still uses eps_cond: both terms must use the same guided eps"),
            (_ddim(x_t, k, k_prev, eps_cond, guided, schedule),
             "the direction term is guided, but pred_x0 still comes from eps_cond: both terms must use the same guided eps"),
            (_ddim(x_t, k, k_prev, guided, guided, schedule, alpha_bar_prev=schedule.alpha_bar[-1].double())
             if k_prev == -1 else None,
             "k_prev = -1 means clean data, alpha_bar_0 = 1; in Python alpha_bar[-1] is the LAST entry (almost 0)"),
            (ddim_step(x_t, k, k_prev, eps_cond, schedule).prev_sample if w != 1 else None,
             "that is the unguided step with eps_cond: combine the two predictions with w first"),
        ]
        for candidate, hint in mistakes:
            if candidate is not None and torch.allclose(result.double(), candidate.double(), atol=1e-5, rtol=1e-4):
                raise ExerciseError(where + hint, GUIDED_FORMULA)
        expect_close(result, expected, where + "guide the noise prediction first; then one DDIM step (2.7) with eta = 0 uses that "
                     "one eps twice, in pred_x0 (2.4) and in the direction back towards x_t", atol=1e-5, formula=GUIDED_FORMULA)
