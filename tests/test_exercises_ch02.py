"""Chapter 02's exercise checkers: the stub is "not attempted", typical mistakes get a hint (the
idea first, the formula only from the third wrong try), the reference solutions pass."""

import math
import re

import pytest
import torch

from diffedu.exercises import ch02
from diffedu.samplers import ddim_step
from diffedu.schedules import make_schedule
from diffedu.toy import GaussianMixture, exact_noise_predictor
from solutions import ch02 as reference
from exercise_helpers import hint_stages, stub, wrong_message


@pytest.mark.parametrize("checker", [ch02.check_gaussian_eps_star, ch02.check_v_to_x0_and_eps, ch02.check_guided_ddim_step])
def test_stubs_are_not_attempted(checker, capsys):
    result = checker(stub)
    assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_value_stub_is_not_attempted():
    assert ch02.check_spread_ratio(...).status == "not attempted" and ch02.check_spread_ratio(None).status == "not attempted"


def test_reference_solutions_pass(capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the chapter runs it: tiny 2-D models
    try:
        ratio = reference.solution_spread_ratio()
    finally:
        torch.set_num_threads(threads)
    assert repr(ch02.check_spread_ratio(ratio)) == "Exercise 2.1: correct"
    assert ch02.check_gaussian_eps_star(reference.solution_gaussian_eps_star)
    assert ch02.check_v_to_x0_and_eps(reference.solution_v_to_x0_and_eps)
    assert repr(ch02.check_guided_ddim_step(reference.solution_guided_ddim_step)) == "Exercise 2.4: correct"
    assert capsys.readouterr().out == ""


# Exercise 2.1: sigma_t^2 = beta_t against beta_tilde_t, measured


def test_the_large_variance_widens_the_blobs_by_a_few_percent():
    """What the learner should find: the same x_T and noise, sigma_t^2 = beta_t gives wider blobs than beta_tilde_t."""
    assert 1.01 < ch02.spread_ratios()["ratio"] < 1.06


@pytest.mark.parametrize(
    "answer, hint",
    [
        (1.0, "same sigma_t"),
        (lambda m: 1 / m["ratio"], "upside down"),
        (lambda m: m["ratio"] ** 2, "ratio of variances"),
        (lambda m: m["large"], "one run's spread"),
        (1.2, "seed 4 for both runs"),
        ("1.03", "a number"),
    ],
)
def test_spread_ratio_mistakes_get_their_hint(answer, hint):
    answer = answer(ch02.spread_ratios()) if callable(answer) else answer
    assert re.search(hint, wrong_message(ch02.check_spread_ratio(answer)))


def test_spread_ratio_hints_come_in_stages():
    first, _, third = hint_stages(ch02.check_spread_ratio, 1.0)
    assert "The formula" not in first and "variance='large');" not in first
    assert "The formula: large = ddpm_sample(" in third


# Exercise 2.2: the exact noise predictor of a single Gaussian


def test_gaussian_eps_star_solution_agrees_with_the_mixture_code():
    """A one-component mixture is a Gaussian: diffedu.toy's exact predictor must agree."""
    mu, s = torch.tensor([0.3, -0.6], dtype=torch.float64), 0.4
    mixture = GaussianMixture(torch.ones(1, dtype=torch.float64), mu[None], torch.tensor([s], dtype=torch.float64))
    schedule = make_schedule("linear")
    x_t = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (5, 300, 900):
        alpha_bar = schedule.alpha_bar[t].double().item()
        library = exact_noise_predictor(mixture, schedule)(x_t, torch.full((16,), t))
        assert torch.allclose(reference.solution_gaussian_eps_star(x_t, alpha_bar, mu, s), library, atol=1e-9)


def _gaussian_variant(kind):
    def eps_star(x_t, alpha_bar, mu, s):
        variance = alpha_bar * s**2 + 1 - alpha_bar
        centred = x_t - math.sqrt(alpha_bar) * mu
        if kind == "sign":
            return -math.sqrt(1 - alpha_bar) * centred / variance
        if kind == "score":
            return -centred / variance
        if kind == "point mass":
            return math.sqrt(1 - alpha_bar) * centred / (1 - alpha_bar)
        if kind == "unscaled mean":
            return math.sqrt(1 - alpha_bar) * (x_t - mu) / variance
        if kind == "variance instead of std":
            return (1 - alpha_bar) * centred / variance
        if kind == "alpha_bar mu":
            return math.sqrt(1 - alpha_bar) * (x_t - alpha_bar * mu) / variance
        if kind == "s for s^2":
            return math.sqrt(1 - alpha_bar) * centred / (alpha_bar * s + 1 - alpha_bar)
        if kind == "divide by the std":
            return math.sqrt(1 - alpha_bar) * centred / math.sqrt(variance)
        if kind == "crash":
            return x_t @ mu[None]  # (n, 2) @ (1, 2): shapes do not fit
        if kind == "other":
            return math.sqrt(1 - alpha_bar) * centred / (s**2 + 1 - alpha_bar)
        raise ValueError(kind)

    return eps_star


@pytest.mark.parametrize(
    "kind, hint",
    [
        ("sign", "sign is flipped"),
        ("score", "that is the score grad log q_t"),
        ("point mass", "exactly at mu"),
        ("unscaled mean", "centre of q_t is not mu"),
        ("variance instead of std", "standard deviation, not by its variance"),
        ("alpha_bar mu", "by a square root"),
        ("s for s^2", "what is its variance"),
        ("divide by the std", "divides by its variance"),
        ("crash", "^your code raised RuntimeError"),
        ("other", "not quite"),
    ],
)
def test_gaussian_eps_star_mistakes_get_hints(kind, hint):
    assert re.search(hint, wrong_message(ch02.check_gaussian_eps_star(_gaussian_variant(kind))))


def test_gaussian_eps_star_wrong_shape():
    assert re.search("shape", wrong_message(ch02.check_gaussian_eps_star(lambda x_t, alpha_bar, mu, s: x_t.sum(1))))


# Exercise 2.3: v-prediction


def _v_variant(kind):
    def v_to_x0_and_eps(x_t, alpha_bar, v):
        a, b = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
        pred_x0, eps = a * x_t - b * v, b * x_t + a * v
        if kind == "swapped":
            return eps, pred_x0
        if kind == "x0 sign":
            return a * x_t + b * v, eps
        if kind == "eps wrong":
            return pred_x0, (x_t - a * pred_x0) / (1 - alpha_bar)
        if kind == "one value":
            return pred_x0
        raise ValueError(kind)

    return v_to_x0_and_eps


@pytest.mark.parametrize(
    "kind, hint",
    [
        ("swapped", "swapped"),
        ("x0 sign", "rotation"),
        ("eps wrong", r"solve \(1.5\) for the noise"),
        ("one value", "return a pair"),
    ],
)
def test_v_prediction_mistakes_get_hints(kind, hint):
    assert re.search(hint, wrong_message(ch02.check_v_to_x0_and_eps(_v_variant(kind))))


def test_hints_of_2_2_and_2_3_come_in_stages():
    first, _, third = hint_stages(ch02.check_gaussian_eps_star, _gaussian_variant("other"))
    assert "The formula" not in first and "alpha_bar s^2 + 1 - alpha_bar)" not in first
    assert "The formula: eps* = sqrt(1 - alpha_bar)" in third
    first, _, third = hint_stages(ch02.check_v_to_x0_and_eps, _v_variant("x0 sign"))
    assert "The formula" not in first and "The formula: pred_x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v" in third


# Exercise 2.4: a guided DDIM step


def _guided_variant(kind):
    def guided_ddim_step(x_t, k, k_prev, eps_cond, eps_uncond, w, schedule):
        guided = eps_uncond + w * (eps_cond - eps_uncond)
        alpha_bar = schedule.alpha_bar[k]
        alpha_bar_prev = schedule.alpha_bar[k_prev] if k_prev >= 0 else torch.ones(())
        eps_x0, eps_direction = guided, guided
        if kind == "reversed":
            eps_x0 = eps_direction = eps_cond + w * (eps_uncond - eps_cond)
        elif kind == "scaled":
            eps_x0 = eps_direction = w * eps_cond
        elif kind == "direction unguided":
            eps_direction = eps_cond
        elif kind == "x0 unguided":
            eps_x0 = eps_cond
        elif kind == "alpha_bar[-1]":
            alpha_bar_prev = schedule.alpha_bar[k_prev]
        elif kind == "no guidance":
            eps_x0 = eps_direction = eps_cond
        elif kind == "eta 1":
            return ddim_step(x_t, k, k_prev, guided, schedule, eta=1.0, noise=torch.ones_like(x_t)).prev_sample
        elif kind == "no square root":
            return alpha_bar_prev * (x_t - (1 - alpha_bar) * guided) / alpha_bar + (1 - alpha_bar_prev) * guided
        elif kind == "forgot return":
            return None
        pred_x0 = (x_t - (1 - alpha_bar).sqrt() * eps_x0) / alpha_bar.sqrt()
        return alpha_bar_prev.sqrt() * pred_x0 + (1 - alpha_bar_prev).sqrt() * eps_direction

    return guided_ddim_step


@pytest.mark.parametrize(
    "kind, hint",
    [
        ("reversed", "points the wrong way"),
        ("scaled", "scaling the conditional prediction by w is not guidance"),
        ("direction unguided", "direction term of \\(2.7\\) still uses eps_cond"),
        ("x0 unguided", "pred_x0 still comes from eps_cond"),
        ("alpha_bar[-1]", "k_prev = -1, w = 3: k_prev = -1 means clean data"),
        ("no guidance", "unguided step"),
        ("eta 1", "guide the noise prediction first"),
        ("no square root", "guide the noise prediction first"),
        ("forgot return", "forget `return x_prev`"),
    ],
)
def test_guided_ddim_mistakes_get_hints(kind, hint):
    assert re.search(hint, wrong_message(ch02.check_guided_ddim_step(_guided_variant(kind))))


def test_guided_ddim_hints_come_in_stages():
    first, _, third = hint_stages(ch02.check_guided_ddim_step, _guided_variant("scaled"))
    assert "The formula" not in first and "eps_uncond + w" not in first
    assert "The formula: eps = eps_uncond + w (eps_cond - eps_uncond)" in third


def test_guided_ddim_with_w_1_is_the_conditional_ddim_step():
    schedule = make_schedule("linear")
    x_t, eps_cond, eps_uncond = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(0))
    step = reference.solution_guided_ddim_step(x_t, 500, 400, eps_cond, eps_uncond, 1.0, schedule)
    assert torch.allclose(step, ddim_step(x_t, 500, 400, eps_cond, schedule).prev_sample, atol=1e-6)
