"""Exercises of chapter 06 (measuring generative models). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number
from diffedu.metrics import frechet_distance, inception_score_from_probs, mmd2_unbiased

FRECHET_CASES = [(0.0, 1.0, 0.0, 1.0), (1.0, 1.0, -1.0, 1.0), (0.5, 2.0, 0.0, 0.5), (-3.0, 0.2, 2.0, 1.5)]


def _as_float(value: object, what: str) -> float:
    """A number returned by the learner's function, as a float."""
    if value is None:
        raise ExerciseError(f"your function returned None: did you forget `return {what}`?")
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise ExerciseError(f"return {what} as one number, got a tensor of shape {tuple(value.shape)}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ExerciseError(f"{what} should be a number, got {type(value).__name__}") from None


def _frechet_1d(mu1: float, std1: float, mu2: float, std2: float) -> float:
    """The library's Frechet distance (6.1) between two 1-D Gaussians, as 1 x 1 covariances."""
    def one(value: float) -> torch.Tensor:
        return torch.tensor([[value]], dtype=torch.float64)
    return frechet_distance(one(mu1)[0], one(std1**2), one(mu2)[0], one(std2**2))


@exercise("6.1")
def check_frechet_1d(frechet_1d) -> None:
    """Exercise 6.1: the Frechet distance (6.1) between N(mu1, std1^2) and N(mu2, std2^2)."""
    for mu1, std1, mu2, std2 in FRECHET_CASES:
        result = _as_float(frechet_1d(mu1, std1, mu2, std2), "the distance")
        expected = _frechet_1d(mu1, std1, mu2, std2)
        if math.isclose(result, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if math.isclose(result, abs(mu1 - mu2) + abs(std1 - std2), rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError("FID is a squared distance: square the difference of the means and of the stds")
        if math.isclose(result, (mu1 - mu2) ** 2 + (std1**2 - std2**2) ** 2, rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError("in 1-D the trace term of (6.1) is built from variances and a square root of their "
                                "product; work it out, it is not (var1 - var2)^2", formula="(mu1 - mu2)^2 + (std1 - std2)^2")
        if math.isclose(result, (mu1 - mu2) ** 2 + std1**2 + std2**2, rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError("the trace term of (6.1) also subtracts 2 (Sigma1 Sigma2)^(1/2): identical Gaussians must give 0")
        raise ExerciseError(f"for N({mu1}, {std1}^2) and N({mu2}, {std2}^2) expected {expected:.4g}, got {result:.4g}. "
                            "Specialise (6.1) to 1-D: every matrix is a number, Sigma = std^2",
                            formula="(mu1 - mu2)^2 + std1^2 + std2^2 - 2 std1 std2 = (mu1 - mu2)^2 + (std1 - std2)^2")


def _probs() -> torch.Tensor:
    gen = torch.Generator().manual_seed(6)
    return torch.softmax(3 * torch.randn(50, 10, generator=gen, dtype=torch.float64), dim=1)  # (50, 10)


@exercise("6.2")
def check_inception_score(inception_score) -> None:
    """Exercise 6.2: the Inception Score (6.4) of class probabilities (N, K)."""
    probs = _probs()
    result = _as_float(inception_score(probs.clone()), "the score")
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.log() - marginal.log())).sum(1)  # (N,)
    if math.isclose(result, kl.mean().item(), rel_tol=1e-4):
        raise ExerciseError("that is the mean KL divergence; (6.4) takes its exponential, so the score runs from 1 to K")
    reverse = (marginal * (marginal.log() - probs.log())).sum(1)
    if math.isclose(result, reverse.mean().exp().item(), rel_tol=1e-4):
        raise ExerciseError("the KL runs from p(y | x) to p(y): weight the log-ratio by p(y | x)")
    if math.isclose(result, kl.exp().mean().item(), rel_tol=1e-4):
        raise ExerciseError("average the KL over the images first, then take exp (exp of the mean, not mean of exp)")
    expect_close(torch.tensor(result), torch.tensor(inception_score_from_probs(probs)),
                 "one KL per image between its p(y | x) and the marginal p(y) (the mean of p(y | x) over the images), "
                 "averaged, then exponentiated", formula="exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y)))")
    uniform = _as_float(inception_score(torch.full((20, 10), 0.1, dtype=torch.float64)), "the score")
    if not math.isclose(uniform, 1.0, rel_tol=1e-6):
        raise ExerciseError(f"uniform predictions must score 1 (every image the same blur of classes), got {uniform:.4g}")


def _features() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return torch.randn(30, 8, generator=gen, dtype=torch.float64), 0.5 + torch.randn(40, 8, generator=gen, dtype=torch.float64)


def _kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


@exercise("6.3")
def check_mmd2_unbiased(mmd2) -> None:
    """Exercise 6.3: the unbiased MMD^2 (6.3) with the KID kernel, given as kernel(x, y) -> (N, M)."""
    a, b = _features()
    result = _as_float(mmd2(a.clone(), b.clone(), _kernel), "MMD^2")
    biased = (_kernel(a, a).mean() + _kernel(b, b).mean() - 2 * _kernel(a, b).mean()).item()
    if math.isclose(result, biased, rel_tol=1e-6):
        raise ExerciseError("that is the biased estimate: the pairs of a point with itself must not count",
                            formula="(sum of k(a_i, a_j) over i != j) / (n (n - 1)), the same for b, minus 2 mean k(a, b)")
    expect_close(torch.tensor(result), torch.tensor(mmd2_unbiased(a, b)),
                 "(6.3) averages the within-set kernel values over pairs of different points, and the cross term over all pairs",
                 formula="(k_aa.sum() - k_aa.trace()) / (n (n - 1)) + (same for b) - 2 k_ab.mean()")


SWEEP_SIZES = (250, 500, 1000, 2000, 5000)


def _sweep() -> tuple[np.ndarray, np.ndarray]:
    """A made-up N sweep: FID_inf = 3, c = 2400, with a little noise."""
    sizes = np.array(SWEEP_SIZES, dtype=float)
    noise = np.random.default_rng(6).normal(0, 0.2, len(sizes))
    return sizes, 3.0 + 2400.0 / sizes + noise


@exercise("6.4")
def check_fid_at_infinity(fid_at_infinity) -> None:
    """Exercise 6.4: fit (6.2), FID_N = FID_inf + c / N, by least squares; return (FID_inf, c)."""
    sizes, fids = _sweep()
    answer = fid_at_infinity(list(sizes.astype(int)), list(fids))
    if answer is None:
        raise ExerciseError("your function returned None: did you forget `return fid_inf, c`?")
    try:
        fid_inf, c = (float(x) for x in answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"return two numbers, (FID_inf, c); got {answer!r}") from None
    slope, intercept = np.polyfit(1 / sizes, fids, 1)
    if math.isclose(fid_inf, intercept, rel_tol=1e-4, abs_tol=1e-6) and math.isclose(c, slope, rel_tol=1e-4):
        return
    if math.isclose(fid_inf, slope, rel_tol=1e-4) and math.isclose(c, intercept, rel_tol=1e-4, abs_tol=1e-6):
        raise ExerciseError("the two numbers are swapped: return (FID_inf, c), the value at 1/N = 0 first")
    in_n = np.polyfit(sizes, fids, 1)
    if math.isclose(fid_inf, in_n[1], rel_tol=1e-4) or math.isclose(c, in_n[0], rel_tol=1e-4):
        raise ExerciseError("(6.2) is a straight line in 1/N, not in N: fit against 1 / N")
    if math.isclose(fid_inf, fids[-1], rel_tol=1e-4):
        raise ExerciseError("that is the FID at the largest N; (6.2) extrapolates further, to 1/N = 0")
    raise ExerciseError(f"expected FID_inf {intercept:.3f} and c {slope:.0f}, got {fid_inf:.3f} and {c:.0f}: fit one straight "
                        "line through all the points, by least squares", formula="c, fid_inf = np.polyfit(1 / sizes, fids, 1)")


@exercise("6.5")
def check_mean_term_ratio(answer) -> None:
    """Exercise 6.5: measured E||mu_a - mu_b||^2 over (2 tr Sigma / N), for two real sets of N: about 1."""
    ratio = expect_number(answer, "the measured mean of ||mu_a - mu_b||^2 divided by 2 tr(Sigma) / N")
    if 0.85 <= ratio <= 1.15:
        return
    if 0.4 <= ratio <= 0.6:
        raise ExerciseError(f"{ratio:.2f} is about 1/2: did you compare one set's mean with the mean of all features? The claim "
                            "is about two independent sets of N, each with its own sampling error")
    if 1.7 <= ratio <= 2.3:
        raise ExerciseError(f"{ratio:.2f} is about 2: divide by 2 tr(Sigma) / N, both sets' errors together")
    if ratio > 20:
        raise ExerciseError(f"{ratio:.3g} is far too big: the mean of N features has covariance Sigma / N; divide by N")
    raise ExerciseError(f"{ratio:.3g} is not about 1. Draw two disjoint random sets of N features, take the squared norm of "
                        "the difference of their means, average over many pairs, and compare with the prediction",
                        formula="mean over pairs of ((a.mean(0) - b.mean(0)) ** 2).sum(), divided by "
                        "2 * torch.cov(features.T).trace() / N")
