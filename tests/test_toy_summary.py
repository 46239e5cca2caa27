"""component_summary: the share, mean and spread of samples near each mixture component."""

import math

import pytest
import torch

from diffedu.toy import GaussianMixture, component_summary, make_toy_mixture


def test_mixture_data_recovers_its_own_parameters():
    mixture = make_toy_mixture()
    n = 200_000
    samples, _ = mixture.sample(n, torch.Generator().manual_seed(0))
    summary = component_summary(mixture, samples)
    # 5 standard errors: sqrt(w (1 - w) / n) for a share, s / sqrt(n w) for a mean coordinate
    weight_se = (mixture.weights * (1 - mixture.weights) / n).sqrt()
    assert ((summary.weights - mixture.weights).abs() < 5 * weight_se).all()
    mean_se = mixture.stds / (n * mixture.weights).sqrt()
    assert ((summary.means - mixture.means).abs() < 5 * mean_se[:, None]).all()
    # an std estimated from 2 n_k squared deviations has relative standard error ~ 1 / sqrt(4 n_k)
    assert ((summary.stds / mixture.stds - 1).abs() < 5 / (4 * n * mixture.weights).sqrt()).all()
    expected_far = math.exp(-8)  # P(chi_2 > 4)
    assert abs(summary.far_fraction - expected_far) < 5 * math.sqrt(expected_far / n)


def test_hand_made_points():
    mixture = GaussianMixture(
        weights=torch.tensor([0.5, 0.5], dtype=torch.float64),
        means=torch.tensor([[0.0, 0.0], [10.0, 0.0]], dtype=torch.float64),
        stds=torch.tensor([1.0, 2.0], dtype=torch.float64),
    )
    points = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [9.0, 1.0], [11.0, -1.0], [4.5, 0.0]])
    summary = component_summary(mixture, points, far=2.0)
    # (4.5, 0) is 4.5 stds from the first mean and 2.75 stds from the second: nearest is the second
    assert summary.weights.tolist() == [0.4, 0.6]
    assert torch.allclose(summary.means, torch.tensor([[0.0, 0.0], [24.5 / 3, 0.0]], dtype=torch.float64))
    assert torch.allclose(summary.stds[0], torch.tensor(math.sqrt(0.5), dtype=torch.float64))
    assert summary.far_fraction == pytest.approx(0.2)


def test_an_empty_component_has_nan_mean():
    summary = component_summary(make_toy_mixture(), torch.tensor([[-1.0, -0.5], [-0.9, -0.5]]))
    assert summary.weights.tolist() == [1.0, 0.0, 0.0]
    assert torch.isnan(summary.means[1:]).all() and not torch.isnan(summary.means[0]).any()


def test_bad_samples():
    with pytest.raises(ValueError, match=r"batch of 2-D points"):
        component_summary(make_toy_mixture(), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="NaN"):
        component_summary(make_toy_mixture(), torch.full((2, 2), float("nan")))
