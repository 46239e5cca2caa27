"""The 2-D Gaussian mixture: exact score, noise predictor and posterior mean."""

import math

import pytest
import torch

from diffedu.schedules import make_schedule
from diffedu.toy import GaussianMixture, exact_noise_predictor, exact_posterior_mean, make_toy_mixture


def test_score_is_the_gradient_of_log_prob():
    mixture = make_toy_mixture()
    x = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    assert torch.allclose(mixture.score(x.detach()), grad, atol=1e-10)


def test_density_integrates_to_one():
    mixture = make_toy_mixture()
    grid = torch.linspace(-3, 3, 601, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    density = mixture.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert abs(density.sum().item() * (grid[1] - grid[0]).item() ** 2 - 1) < 1e-3


def test_noised_mixture_matches_forward_process_samples():
    mixture, gen = make_toy_mixture(), torch.Generator().manual_seed(0)
    x0, _ = mixture.sample(200_000, gen)
    alpha_bar = 0.3
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(x0.shape, generator=gen)
    noised = mixture.noised(alpha_bar)
    expected_mean = (noised.weights[:, None] * noised.means).sum(0)
    assert torch.allclose(x_t.double().mean(0), expected_mean, atol=0.01)
    # average log-likelihood under the exact noised density beats a wrong one
    assert noised.log_prob(x_t[:5000]).mean() > mixture.noised(0.9).log_prob(x_t[:5000]).mean()


def test_exact_posterior_mean_is_a_regression_of_x0_on_x_t():
    """E[x_0 | x_t] minimises squared error: it beats small perturbations of itself."""
    mixture, gen, schedule = make_toy_mixture(), torch.Generator().manual_seed(1), make_schedule("linear")
    t = 300
    alpha_bar = schedule.alpha_bar[t].double().item()
    x0, _ = mixture.sample(100_000, gen)
    x_t = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(x0.shape, generator=gen)
    posterior_mean = exact_posterior_mean(mixture, x_t, alpha_bar)
    best = ((posterior_mean - x0.double()) ** 2).sum(1).mean()
    for shift in (0.02, -0.02):
        assert best < ((posterior_mean + shift - x0.double()) ** 2).sum(1).mean()
    # and the exact noise predictor is consistent with it through eq. (2.4)
    eps = exact_noise_predictor(mixture, schedule)(x_t, torch.full((x_t.shape[0],), t))
    pred_x0 = (x_t - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    assert torch.allclose(pred_x0.double(), posterior_mean, atol=1e-5)


def test_bad_mixture_parameters():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(torch.tensor([0.5, 0.6]), torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="expected weights"):
        GaussianMixture(torch.tensor([1.0]), torch.zeros(1, 3), torch.ones(1))
    with pytest.raises(ValueError, match=r"batch of 2-D points"):
        make_toy_mixture().score(torch.zeros(3))
