"""diffedu.restoration (chapter 10): operators and their pseudo-inverses, DDNM's exact agreement with
a noiseless observation, DPS's step against a hand computation, batch independence, and the exact
posterior of the toy mixture (toy.observation_posterior) against brute-force integration on a grid."""

import math

import pytest
import torch

from diffedu.restoration import (Downsample, Identity, Mask, Matrix, ddnm_states, dps_states, dps_step, observe,
                                 range_null_x0, sdedit_states)
from diffedu.samplers import alpha_bar_at, ddim_step, ddim_timesteps, step_time
from diffedu.schedules import make_schedule
from diffedu.toy import exact_noise_predictor, make_toy_mixture, observation_posterior

SCHEDULE = make_schedule("cosine")


def linear_model(c: float):
    """eps_theta(x_t, k) = c x_t: a 'network' whose x_0 estimate is a known multiple of x_t."""
    return lambda x_t, k: c * x_t


def run(states) -> torch.Tensor:
    x = None
    for step in states:
        x = step.prev_sample
    return x


def test_pseudo_inverses_are_right_inverses_and_projections():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(3, 1, 28, 28, generator=gen)
    keep = (torch.rand(1, 1, 28, 28, generator=gen) < 0.5).float()
    matrix = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    for operator, x in ((Downsample(4), images), (Downsample(2), images), (Mask(keep), images), (Identity(), images),
                        (Matrix(matrix), torch.randn(5, 2, generator=gen, dtype=torch.float64))):
        y = operator(x)
        assert torch.allclose(operator(operator.pinv(y)), y, atol=1e-6)  # A A^+ = I
        projected = operator.pinv(operator(x))  # A^+ A x
        assert torch.allclose(operator.pinv(operator(projected)), projected, atol=1e-6)  # a projection
        assert torch.allclose(operator(range_null_x0(torch.zeros_like(x), operator, y)), y, atol=1e-6)  # (10.5)
    assert Downsample(4)(images).shape == (3, 1, 7, 7)
    assert torch.allclose(Downsample(4).pinv(Downsample(4)(images))[0, 0, :4, :4], images[0, 0, :4, :4].mean().expand(4, 4))


def test_bad_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="multiples of 3"):
        Downsample(3)(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="whole number"):
        Downsample(0)
    with pytest.raises(ValueError, match="only 0"):
        Mask(torch.full((1, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="noise_std"):
        observe(torch.zeros(1, 2), Identity(), noise_std=-1.0)


@pytest.mark.parametrize("operator", [Downsample(4), Mask((torch.arange(28 * 28).reshape(1, 1, 28, 28) % 3 == 0).float())])
def test_ddnm_ends_exactly_on_the_observation(operator):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 1, 28, 28, generator=gen) * 2 - 1
    y = observe(x0, operator)
    x_T = torch.randn(2, 1, 28, 28, generator=gen)
    x = run(ddnm_states(linear_model(0.3), x_T, SCHEDULE, ddim_timesteps(1000, 10), operator, y))
    assert torch.allclose(operator(x), y, atol=1e-5)  # A x = y: the range space is the observation's
    assert not torch.allclose(x, operator.pinv(y), atol=1e-2)  # and the null space came from the model


def test_dps_step_matches_a_hand_computation():
    """With eps = c x_t, pred_x0 = a x_t, a = (1 - c sqrt(1 - alpha_bar)) / sqrt(alpha_bar); the gradient of
    ||y - A a x_t||^2 is -2 a A^T (y - a A x_t), and zeta = step_size / ||y - a A x_t||."""
    gen = torch.Generator().manual_seed(2)
    matrix = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    x_t = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    c, k, k_next, step_size = 0.4, 600, 500, 0.7
    step = dps_step(linear_model(c), x_t, k, k_next, SCHEDULE, Matrix(matrix), y, step_size, eta=0.0, clip_x0=None)

    alpha_bar = alpha_bar_at(SCHEDULE, step_time(k, SCHEDULE, x_t), x_t).double()
    a = (1 - c * (1 - alpha_bar).sqrt()) / alpha_bar.sqrt()  # (4, 1)
    residual = y - (a * x_t) @ matrix.T  # (4, 2)
    grad = -2 * a * residual @ matrix  # (4, 3)
    zeta = step_size / residual.norm(dim=1, keepdim=True)
    expected = ddim_step(x_t, k, k_next, c * x_t, SCHEDULE).prev_sample - zeta * grad
    assert torch.allclose(step.prev_sample, expected, atol=1e-10)


def test_deterministic_methods_do_not_depend_on_the_batch():
    mixture = make_toy_mixture()
    model = exact_noise_predictor(mixture, SCHEDULE)
    operator = Matrix(torch.tensor([[1.0, 0.0]]))
    gen = torch.Generator().manual_seed(3)
    x_T, y = torch.randn(6, 2, generator=gen), torch.randn(6, 1, generator=gen)
    timesteps = ddim_timesteps(1000, 8)
    for method in (lambda x, y: ddnm_states(model, x, SCHEDULE, timesteps, operator, y, clip_x0=None),
                   lambda x, y: dps_states(model, x, SCHEDULE, timesteps, operator, y, step_size=0.5, eta=0.0, clip_x0=None)):
        whole = run(method(x_T, y))
        halves = torch.cat([run(method(x_T[:3], y[:3])), run(method(x_T[3:], y[3:]))])
        assert torch.allclose(whole, halves, atol=1e-5)


def test_sdedit_returns_the_guess_when_the_model_knows_it():
    """A model that predicts the exact noise towards x_0 makes every DDIM step land on x_0's path (10.4)."""
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(6)) * 2 - 1

    def oracle(x_t, k):
        alpha_bar = SCHEDULE.alpha_bar[k].float().reshape(-1, 1, 1, 1)
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    x = run(sdedit_states(oracle, x0, SCHEDULE, ddim_timesteps(1000, 10)[4:], torch.Generator().manual_seed(7)))
    assert torch.allclose(x, x0, atol=1e-4)


def test_observation_posterior_matches_integration_on_a_grid():
    """(10.3) against p(x) N(y; A x, sigma^2) summed over a fine grid: component masses, mean and covariance."""
    mixture = make_toy_mixture()
    matrix, y, noise_std = torch.tensor([[0.6, 0.8]], dtype=torch.float64), torch.tensor([-0.1], dtype=torch.float64), 0.3
    posterior = observation_posterior(mixture, matrix, y, noise_std)

    axis = torch.linspace(-3, 3, 601, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)  # (N, 2)
    log_like = -((grid @ matrix.T - y) ** 2).sum(1) / (2 * noise_std**2)
    per_component = torch.stack([
        mixture.weights[k] * torch.exp(-((grid - mixture.means[k]) ** 2).sum(1) / (2 * mixture.stds[k] ** 2))
        / (2 * math.pi * mixture.stds[k] ** 2) for k in range(mixture.num_components)]) * log_like.exp()  # (K, N)
    density = per_component.sum(0)
    mass = per_component.sum(1) / density.sum()
    mean = (density[:, None] * grid).sum(0) / density.sum()
    centred = grid - mean
    covariance = (density[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0) / density.sum()

    assert torch.allclose(posterior.weights, mass, atol=1e-6)
    mixture_mean = (posterior.weights[:, None] * posterior.means).sum(0)
    assert torch.allclose(mixture_mean, mean, atol=1e-6)
    spread = posterior.means - mixture_mean
    mixture_cov = (posterior.weights[:, None, None] * (posterior.covariances + spread[:, :, None] * spread[:, None, :])).sum(0)
    assert torch.allclose(mixture_cov, covariance, atol=1e-6)
    points, _ = posterior.sample(20_000, torch.Generator().manual_seed(5))
    assert torch.allclose(points.double().mean(0), mean, atol=0.03)


def test_observation_posterior_rejects_bad_input():
    mixture = make_toy_mixture()
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        observation_posterior(mixture, torch.eye(2), torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match=r"matrix \(m, 2\)"):
        observation_posterior(mixture, torch.eye(3), torch.zeros(3), 0.1)
