"""Why chapter 02's statistical checks are fair: the reasoning of the appendix notebook
(chapters/appendix_checks.ipynb, sections 4-5), shown numerically.

The chapter allows 4 standard errors (SE) in every check on random samples. These tests confirm
(1) that 4 SE means a false-alarm rate of 6.3e-5, (2) that the standard errors the chapter uses
are the real spread of its statistics (by repeating each check many times at a small n), (3) that
the count of points far from every mode needs the Poisson quantile, not "mean + 4 SE", (4) the
arithmetic behind the basin-map budget, and (5) the float32 argument for the last DDPM steps.
"""

import math

import pytest
import torch
from scipy import stats

from diffedu.samplers import q_posterior
from diffedu.schedules import make_schedule
from diffedu.toy import component_summary, make_toy_mixture

FALSE_ALARM = math.erfc(4 / math.sqrt(2))  # P(|Z| > 4)


def poisson_upper_quantile(mean, false_alarm=FALSE_ALARM):
    """The chapter's rule: the smallest m with P(N > m) <= false_alarm, N ~ Poisson(mean)."""
    m = 0
    probability = cumulative = math.exp(-mean)
    while 1 - cumulative > false_alarm:
        m += 1
        probability *= mean / m
        cumulative += probability
    return m


def test_four_standard_errors_is_a_false_alarm_rate_of_6e_5():
    assert FALSE_ALARM == pytest.approx(6.334e-5, rel=1e-3)
    assert FALSE_ALARM == pytest.approx(2 * stats.norm.sf(4), rel=1e-9)


def test_monte_carlo_posterior_standard_errors():
    """Section 2's check of (2.1), repeated 2,000 times with n = 2,000 draws each: the spread of
    the three statistics across repetitions matches sqrt(beta_tilde / n), 1 / sqrt(n) and sqrt(2 / n)."""
    schedule = make_schedule("linear")
    generator = torch.Generator().manual_seed(0)
    repeats, n, k = 2_000, 2_000, 10  # k = 10 is the chapter's t = 11
    x0 = torch.tensor([0.5, -1.0], dtype=torch.float64).expand(repeats, n, 2)
    alpha_bar_prev = schedule.alpha_bar[k - 1].double()
    x_prev = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev).sqrt() * torch.randn(repeats, n, 2, generator=generator, dtype=torch.float64)
    x_t = schedule.alphas[k].double().sqrt() * x_prev + schedule.betas[k].double().sqrt() * torch.randn(
        repeats, n, 2, generator=generator, dtype=torch.float64)
    mean, variance = q_posterior(x0.reshape(-1, 2), x_t.reshape(-1, 2), k, schedule)
    beta_tilde = variance[0, 0].double().item()
    residual = x_prev - mean.double().reshape(repeats, n, 2)  # (repeats, n, 2)

    residual_mean = residual.mean(1)  # (repeats, 2)
    centred_r, centred_x = residual - residual_mean[:, None], x_t - x_t.mean(1, keepdim=True)
    correlation = (centred_r * centred_x).sum(1) / (centred_r.norm(dim=1) * centred_x.norm(dim=1))  # (repeats, 2)
    variance_ratio = residual.var(1) / beta_tilde  # (repeats, 2)

    # The spread over 2,000 repeats is itself known to about 1.6 %: allow 10 %.
    assert residual_mean.std().item() == pytest.approx(math.sqrt(beta_tilde / n), rel=0.1)
    assert correlation.std().item() == pytest.approx(1 / math.sqrt(n), rel=0.1)
    assert variance_ratio.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.1)
    # ... and centred where the formula says: the posterior (2.1) is right.
    assert abs(residual_mean.mean().item()) < 4 * math.sqrt(beta_tilde / n / residual_mean.numel())
    assert abs(variance_ratio.mean().item() - 1) < 4 * math.sqrt(2 / n / variance_ratio.numel())


def test_mixture_summary_standard_errors():
    """Section 6's tolerances: over 400 fresh samples of n = 2,000 true mixture points, the spread
    of each component's share, mean and spread ratio matches the formulas of the chapter's note."""
    mixture = make_toy_mixture()
    generator = torch.Generator().manual_seed(1)
    repeats, n = 400, 2_000
    summaries = [component_summary(mixture, mixture.sample(n, generator)[0]) for _ in range(repeats)]
    weights = torch.stack([s.weights for s in summaries])  # (repeats, K)
    means = torch.stack([s.means for s in summaries])  # (repeats, K, 2)
    std_ratio = torch.stack([s.stds for s in summaries]) / mixture.stds  # (repeats, K)
    w, s = mixture.weights, mixture.stds
    # The spread over 400 repeats is known to about 3.5 %: allow 15 %.
    assert torch.allclose(weights.std(0), (w * (1 - w) / n).sqrt(), rtol=0.15)
    assert torch.allclose(means.std(0), (s / (n * w).sqrt())[:, None].expand(-1, 2), rtol=0.15)
    assert torch.allclose(std_ratio.std(0), 1 / (2 * (n * w).sqrt()), rtol=0.15)


@pytest.mark.parametrize("n, allowed", [(2_000, 6), (5_000, 9)])
def test_far_count_uses_the_poisson_quantile(n, allowed):
    """Points far from every mode: p <= exp(-8) for true data, so np is about 0.7 (n = 2,000) or
    1.7 (n = 5,000), a count nothing like a normal variable."""
    p = math.exp(-8)
    assert poisson_upper_quantile(n * p) == allowed
    # The exact binomial false-alarm rate of the chapter's rule is at most that of 4 SE ...
    assert stats.binom.sf(allowed, n, p) <= FALSE_ALARM
    # ... while "mean + 4 SE" would fail a correct sampler far more often (0.5 % at n = 2,000).
    naive_allowed = math.floor(n * (p + 4 * math.sqrt(p / n)))
    naive_rate = stats.binom.sf(naive_allowed, n, p)
    assert naive_rate > 10 * FALSE_ALARM
    if n == 2_000:
        assert naive_allowed == 3 and naive_rate == pytest.approx(0.005, rel=0.1)


def test_basin_budget_is_a_quarter_of_the_smallest_weight_tolerance():
    """Section 6's deterministic basin check allows 0.005: a quarter of the smallest 4-SE
    tolerance for a sampled weight at n = 5,000 (0.023), rounded down."""
    w = make_toy_mixture().weights
    smallest = (4 * (w * (1 - w) / 5_000).sqrt()).min().item()
    assert smallest == pytest.approx(0.023, abs=5e-4)
    assert 0.005 <= smallest / 4


def test_float32_loses_digits_of_beta_in_the_last_steps():
    """Section 7: re-deriving beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} from float32 alpha_bar
    (as diffusers does) keeps only 3 to 4 digits in the last steps; the stored betas keep all."""
    schedule = make_schedule("linear")
    betas64 = schedule.betas.double()
    alpha_bar32 = torch.cumprod(1 - betas64, 0).float()
    for k in (1, 5):
        rederived = (1 - alpha_bar32[k] / alpha_bar32[k - 1]).double()
        relative_error = abs(rederived / betas64[k] - 1).item()
        assert 1e-5 < relative_error < 1e-2
        assert abs(schedule.betas[k].double() / betas64[k] - 1).item() < 1e-6
