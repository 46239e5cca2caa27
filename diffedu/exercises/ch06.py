"""Exercises of chapter 06 (measuring generative models). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close
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
            raise ExerciseError("in 1-D the trace term var1 + var2 - 2 sqrt(var1 var2) is (std1 - std2)^2, not (var1 - var2)^2")
        if math.isclose(result, (mu1 - mu2) ** 2 + std1**2 + std2**2, rel_tol=1e-6, abs_tol=1e-9):
            raise ExerciseError("the trace term of (6.1) also subtracts 2 sqrt(var1 var2): identical Gaussians must give 0")
        raise ExerciseError(f"for N({mu1}, {std1}^2) and N({mu2}, {std2}^2) expected {expected:.4g}, got {result:.4g}. "
                            "Hint: specialise (6.1) to 1-D, where Sigma = std^2 and the matrix square root is std1 std2")


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
        raise ExerciseError("that is the mean KL divergence; the score is its exponential, exp(mean KL), from 1 to K")
    reverse = (marginal * (marginal.log() - probs.log())).sum(1)
    if math.isclose(result, reverse.mean().exp().item(), rel_tol=1e-4):
        raise ExerciseError("the KL runs from p(y | x) to p(y): sum over y of p(y | x) log(p(y | x) / p(y))")
    if math.isclose(result, kl.exp().mean().item(), rel_tol=1e-4):
        raise ExerciseError("average the KL over the images first, then take exp (exp of the mean, not mean of exp)")
    expect_close(torch.tensor(result), torch.tensor(inception_score_from_probs(probs)),
                 "IS = exp(mean over x of KL(p(y|x) || p(y))), with p(y) the mean of p(y|x) over the images")
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
        raise ExerciseError("that is the biased estimate: leave out the diagonal k(a_i, a_i) from the within-set "
                            "means and divide by n (n - 1)")
    expect_close(torch.tensor(result), torch.tensor(mmd2_unbiased(a, b)),
                 "within-set means over pairs i != j (n (n - 1) of them), minus 2 times the mean of k(a, b) over all n m pairs")
