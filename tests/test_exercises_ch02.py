"""Chapter 02's exercise checkers: the stub is "not attempted", typical mistakes get a hint,
the reference solutions pass."""

import math
import re

import pytest
import torch

from diffedu.exercises import ch02
from diffedu.schedules import make_schedule
from diffedu.toy import GaussianMixture, exact_noise_predictor
from solutions import ch02 as reference
from exercise_helpers import stub, wrong_message


@pytest.mark.parametrize("checker", [ch02.check_posterior_variance, ch02.check_gaussian_eps_star, ch02.check_v_to_x0_and_eps])
def test_stubs_are_not_attempted(checker, capsys):
    result = checker(stub)
    assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass(capsys):
    assert repr(ch02.check_posterior_variance(reference.solution_posterior_variance)) == "Exercise 2.1: correct"
    assert ch02.check_gaussian_eps_star(reference.solution_gaussian_eps_star)
    assert ch02.check_v_to_x0_and_eps(reference.solution_v_to_x0_and_eps)
    assert capsys.readouterr().out == ""


# Exercise 2.1: the posterior variance


def test_posterior_variance_solution_matches_the_library_schedule():
    schedule = make_schedule("linear")
    mine = reference.solution_posterior_variance(schedule.betas.double())
    assert torch.allclose(mine.float(), schedule.posterior_variance, rtol=1e-5, atol=1e-12)


def _alpha_bars(betas):
    alpha_bar = torch.cumprod(1 - betas, 0)
    return alpha_bar, torch.cat([torch.ones(1, dtype=betas.dtype), alpha_bar[:-1]])


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda betas: betas, "beta_t itself"),
        (lambda betas: (1 - _alpha_bars(betas)[0]) / (1 - _alpha_bars(betas)[1]) * betas, "upside down"),
        (
            lambda betas: (1 - torch.roll(_alpha_bars(betas)[0], 1)) / (1 - _alpha_bars(betas)[0]) * betas,
            "alpha_bar_0 = 1, so beta_tilde_1 = 0",
        ),
        (lambda betas: (1 - _alpha_bars(betas)[1]) / (1 - _alpha_bars(betas)[0]) * betas.sqrt(), "not quite"),
        (lambda betas: None, "returned None"),
        (lambda betas: betas[1:], "shape"),
    ],
)
def test_posterior_variance_mistakes_get_hints(wrong, hint):
    assert re.search(hint, wrong_message(ch02.check_posterior_variance(wrong)))


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
        ("score", "that is \\(up to sign\\) the score"),
        ("point mass", "exactly at mu"),
        ("unscaled mean", r"sqrt\(alpha_bar\) \* mu"),
        ("variance instead of std", r"square root is missing.*sqrt\(1 - alpha_bar\), not by its variance"),
        ("alpha_bar mu", r"square root is missing.*not alpha_bar \* mu"),
        ("s for s^2", r"its variance is s\^2"),
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
        ("eps wrong", r"eq. \(2.4\) solved for the noise"),
        ("one value", "return a pair"),
    ],
)
def test_v_prediction_mistakes_get_hints(kind, hint):
    assert re.search(hint, wrong_message(ch02.check_v_to_x0_and_eps(_v_variant(kind))))
