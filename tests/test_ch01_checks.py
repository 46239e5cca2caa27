"""Why chapter 01's statistical checks are fair: their false-alarm rates and their power.

The appendix notebook (chapters/appendix_checks.ipynb, sections 1-3) tests chapter 01's eq. (1.5)
on N noising chains at five timesteps with three checks: the sample mean within 5 standard errors,
the sample variance within 5 standard errors, and sqrt(N) * (Kolmogorov-Smirnov distance) below
1.95. The same checks run for the cosine schedule and, KS only, against the exact MNIST mixture.
Chapter 01 itself shows the histograms; the reasoning behind the checks lives here:

- false alarms: a correct implementation fails a 5-standard-error check with probability
  erfc(5 / sqrt 2) ~ 6e-7, and the KS check with probability ~0.001 (Kolmogorov 1933);
  by the union bound, all 35 checks of the chapter together with probability < 2%.
  The simulations below confirm the per-check rates on fresh Gaussian samples.
- power: the chapter's bug (the step without the sqrt(alpha_t) shrink, a random walk) is
  invisible at t = 1 (k = 0), fails the mean and KS checks from t = 50 (k = 49) on and the
  variance check from t = 250 (k = 249) on, for both fast-mode and full-mode chain counts.

The helpers repeat the notebook's few lines on purpose (a test cannot import a notebook).
"""

import math

import pytest
import torch

MEAN_TOLERANCE = 5.0  # standard errors, as in the chapter
VARIANCE_TOLERANCE = 5.0  # standard errors
KS_LIMIT = 1.95  # sqrt(N) * KS distance
CHAIN_COUNTS = (20_000, 100_000)  # NUM_CHAINS in fast and full mode
CHECK_STEPS = (0, 49, 249, 499, 999)  # code indices k, the paper's t = k + 1


def kolmogorov_tail(c: float, terms: int = 100) -> float:
    """P(sqrt(N) D > c) for large N when the samples follow F (Kolmogorov's distribution)."""
    return 2 * sum((-1) ** (m - 1) * math.exp(-2 * m**2 * c**2) for m in range(1, terms + 1))


def ks_scaled_batch(samples: torch.Tensor) -> torch.Tensor:
    """sqrt(N) * KS distance to N(0, 1) for each row of samples (R, N)."""
    n = samples.shape[1]
    cdf = torch.special.ndtr(samples.sort(dim=1).values)  # (R, N)
    ranks = torch.arange(1, n + 1, dtype=cdf.dtype)  # (N,)
    distance = torch.maximum(ranks / n - cdf, cdf - (ranks - 1) / n).amax(dim=1)  # (R,)
    return math.sqrt(n) * distance


def standard_normal_samples(repeats: int, n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(repeats, n, generator=generator, dtype=torch.float64)  # (R, N)


def test_false_alarm_rate_of_each_check():
    assert math.erfc(MEAN_TOLERANCE / math.sqrt(2)) == pytest.approx(5.7e-7, rel=0.01)  # P(|Z| > 5)
    assert 0.9e-3 < kolmogorov_tail(KS_LIMIT) <= 1e-3


def test_false_alarm_budget_of_the_whole_chapter():
    num_gaussian_checks = 2 * 5 * 2  # mean and variance, 5 timesteps, 2 schedules (sections 4 and 6)
    num_ks_checks = 5 * 2 + 5  # 5 timesteps, 2 schedules, plus 5 against the MNIST mixture (section 7)
    bound = num_gaussian_checks * math.erfc(MEAN_TOLERANCE / math.sqrt(2)) + num_ks_checks * kolmogorov_tail(KS_LIMIT)
    assert num_gaussian_checks + num_ks_checks == 35
    assert 0.014 < bound < 0.02  # union bound: about 1.5%


def test_kolmogorov_tail_matches_simulated_ks_statistics():
    """Simulate the KS statistic under a correct model and compare its tail with Kolmogorov's formula."""
    repeats = 4_000
    ks = ks_scaled_batch(standard_normal_samples(repeats, 1_000, seed=0))  # (R,)
    # At c = 1.36 the tail is 5%: measurable with 4,000 repeats (standard error 0.0034).
    assert (ks > 1.36).double().mean().item() == pytest.approx(kolmogorov_tail(1.36), abs=0.015)
    # At the chapter's limit, about 4 of 4,000 are expected; more than 15 would mean a much larger rate.
    assert (ks > KS_LIMIT).sum().item() <= 15


def test_standardised_mean_and_variance_errors_are_standard_normal():
    """Under a correct model the errors, in standard errors, have spread 1: 5 is far in the tail."""
    repeats, n = 4_000, 1_000
    mean, std = 0.7, 0.3
    samples = mean + std * standard_normal_samples(repeats, n, seed=1)  # (R, N)
    mean_error = (samples.mean(dim=1) - mean) / (std / math.sqrt(n))  # (R,)
    variance_error = (samples.var(dim=1) - std**2) / (std**2 * math.sqrt(2 / (n - 1)))  # (R,)
    for error in (mean_error, variance_error):
        assert error.std().item() == pytest.approx(1.0, abs=0.05)
        assert error.abs().max().item() < MEAN_TOLERANCE


def random_walk_shifts(num_chains: int, k: int) -> tuple[float, float]:
    """How far, in standard errors, the random walk's mean and variance lie from eq. (1.5) at code k (x_0 = 1)."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # the linear schedule
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    variance = 1 - alpha_bar[k]  # what (1.5) predicts
    mean_shift = (1 - alpha_bar[k].sqrt()) / (variance.sqrt() / math.sqrt(num_chains))
    variance_shift = (betas[: k + 1].sum() - variance) / (variance * math.sqrt(2 / (num_chains - 1)))
    return mean_shift.item(), variance_shift.item()


@pytest.mark.parametrize("num_chains", CHAIN_COUNTS)
def test_power_against_the_random_walk_bug(num_chains):
    mean_shift, variance_shift = random_walk_shifts(num_chains, 0)
    assert mean_shift < 2 and abs(variance_shift) < 1e-6  # t = 1 (k = 0): invisible
    mean_shift, variance_shift = random_walk_shifts(num_chains, 49)
    assert mean_shift > 10 and variance_shift < 3.5  # t = 50 (k = 49): the mean fails, the variance does not
    for k in CHECK_STEPS[2:]:
        mean_shift, variance_shift = random_walk_shifts(num_chains, k)
        assert mean_shift > 50 and variance_shift > 30  # from t = 250 (k = 249) on: both fail by far


def test_random_walk_at_the_first_step_needs_about_a_million_chains():
    assert 4 < random_walk_shifts(1_000_000, 0)[0] < 6
