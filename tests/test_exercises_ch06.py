"""Chapter 06 checkers: stub -> not attempted, wrong -> hint (the idea first, the formula late), reference -> correct."""

import math

import numpy as np
import pytest
import torch

from diffedu.exercises import ch06
from solutions import ch06 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch06.check_frechet_1d(stub), ch06.check_inception_score(stub), ch06.check_mmd2_unbiased(stub),
                   ch06.check_fid_at_infinity(stub), ch06.check_mean_term_ratio(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def _features(n=10_000, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return 3 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ mixing  # correlated, not centred


def test_reference_solutions_pass():
    assert repr(ch06.check_frechet_1d(reference.solution_frechet_1d)) == "Exercise 6.1: correct"
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1 - s2) ** 2)
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: torch.tensor((m1 - m2) ** 2 + (s1 - s2) ** 2))
    assert ch06.check_inception_score(reference.solution_inception_score)
    assert ch06.check_inception_score(lambda p: torch.tensor(reference.solution_inception_score(p)).float())
    assert ch06.check_mmd2_unbiased(reference.solution_mmd2_unbiased)
    assert ch06.check_fid_at_infinity(reference.solution_fid_at_infinity)
    assert ch06.check_fid_at_infinity(lambda s, f: np.array(reference.solution_fid_at_infinity(s, f)))
    assert ch06.check_mean_term_ratio(reference.solution_mean_term_ratio(_features()))
    assert math.isfinite(reference.solution_frechet_1d(0.0, 1.0, 1.0, 2.0))


def test_the_mean_term_is_two_trace_sigma_over_n():
    """The claim behind exercise 6.5, on Gaussian features: the measured ratio is 1 within sampling noise."""
    for n in (50, 200):
        assert abs(reference.solution_mean_term_ratio(_features(), n=n, pairs=400) - 1) < 0.1


def test_the_extrapolation_recovers_a_known_line():
    sizes = [250, 500, 1000, 2000, 5000]
    fid_inf, c = reference.solution_fid_at_infinity(sizes, [1.5 + 800 / n for n in sizes])
    assert math.isclose(fid_inf, 1.5, abs_tol=1e-9) and math.isclose(c, 800, rel_tol=1e-9)


def _mean_kl(probs):
    marginal = probs.mean(0, keepdim=True)
    return (probs * (probs.log() - marginal.log())).sum(1).mean().item()


def _biased(a, b, kernel):
    return (kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()).item()


def _fit_in_n(sizes, fids):
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(fids, float), 1)
    return intercept, slope


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: abs(m1 - m2) + abs(s1 - s2), "squared distance"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1**2 - s2**2) ** 2, "not (var1 - var2)"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2 + s1**2 + s2**2, "also subtracts 2"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2, "Specialise (6.1) to 1-D"),
        (ch06.check_frechet_1d, lambda *args: "zero", "a number"),
        (ch06.check_frechet_1d, lambda *args: None, "returned None"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: math.log(m1 - m2), "your code raised ValueError: math domain"),
        (ch06.check_inception_score, _mean_kl, "exponential"),
        (ch06.check_inception_score,
         lambda p: (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).exp().mean().item(), "exp of the mean"),
        (ch06.check_inception_score,
         lambda p: (p.mean(0, keepdim=True) * (p.mean(0, keepdim=True).log() - p.log())).sum(1).mean().exp().item(),
         "the KL runs from p(y | x) to p(y)"),
        (ch06.check_inception_score, lambda p: p.max(1).values, "as one number"),
        (ch06.check_inception_score, lambda p: 2.0, "one KL per image"),
        (ch06.check_mmd2_unbiased, _biased, "biased estimate"),
        (ch06.check_mmd2_unbiased, lambda a, b, kernel: _biased(a, b, kernel) / 2, "pairs of different points"),
        (ch06.check_fid_at_infinity, lambda s, f: reference.solution_fid_at_infinity(s, f)[::-1], "swapped"),
        (ch06.check_fid_at_infinity, _fit_in_n, "not in N"),
        (ch06.check_fid_at_infinity, lambda s, f: (f[-1], 0.0), "largest N"),
        (ch06.check_fid_at_infinity, lambda s, f: (f[0], 1.0), "one straight line"),
        (ch06.check_fid_at_infinity, lambda s, f: 3.0, "two numbers"),
        (ch06.check_mean_term_ratio, 0.5, "about 1/2"),
        (ch06.check_mean_term_ratio, 2.0, "about 2"),
        (ch06.check_mean_term_ratio, 100.0, "divide by N"),
        (ch06.check_mean_term_ratio, 0.1, "not about 1"),
        (ch06.check_mean_term_ratio, "one", "a number"),
    ],
)
def test_wrong_answers_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize(
    "checker, wrong, formula",
    [
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2, "(mu1 - mu2)^2 + (std1 - std2)^2"),
        (ch06.check_inception_score, lambda p: 2.0, "exp(mean_x sum_y"),
        (ch06.check_mmd2_unbiased, lambda a, b, kernel: 0.123, "k_aa.trace()"),
        (ch06.check_fid_at_infinity, lambda s, f: (f[0], 1.0), "np.polyfit(1 / sizes, fids, 1)"),
        (ch06.check_mean_term_ratio, 0.1, "2 * torch.cov(features.T).trace() / N"),
    ],
)
def test_hints_come_in_stages(checker, wrong, formula):
    first, _, third = hint_stages(checker, wrong)
    assert formula not in first and "The formula" not in first
    assert f"The formula: {formula}" in third or formula in third.split("The formula: ", 1)[-1]
