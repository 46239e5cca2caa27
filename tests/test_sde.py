"""Chapter 07's continuous-time tools, checked against closed forms and against DDIM."""

import math

import pytest
import torch

from diffedu.samplers import ddim_sample, ddim_step, ddim_timesteps
from diffedu.schedules import make_schedule
from diffedu.sde import (
    annealed_langevin_sample, eps_from_score, karras_timesteps, langevin_sample, ode_euler_step,
    probability_flow_sample, score_from_eps, sigma_of,
)
from diffedu.toy import component_summary, exact_noise_predictor, make_toy_mixture


def gaussian_eps(std: float, schedule):
    """The exact noise predictor for data ~ N(0, std^2 I): eps = sqrt(1 - ab) x / (ab std^2 + 1 - ab)."""

    def model(x_t, t):
        alpha_bar = schedule.alpha_bar.double()[t].view(-1, *([1] * (x_t.ndim - 1)))
        return (1 - alpha_bar).sqrt() * x_t.double() / (alpha_bar * std**2 + 1 - alpha_bar)

    return model


def test_score_and_eps_convert_both_ways_on_the_exact_mixture():
    mixture, schedule = make_toy_mixture(), make_schedule("linear")
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = 300
    alpha_bar = schedule.alpha_bar[t].double().item()
    eps = exact_noise_predictor(mixture, schedule)(x, torch.full((50,), t))
    assert torch.allclose(score_from_eps(eps, alpha_bar), mixture.noised(alpha_bar).score(x), atol=1e-10)
    assert torch.allclose(eps_from_score(score_from_eps(eps, alpha_bar), alpha_bar), eps, atol=1e-12)
    per_sample = torch.full((50,), alpha_bar, dtype=torch.float64)
    assert torch.allclose(score_from_eps(eps, per_sample), score_from_eps(eps, alpha_bar))


def test_score_from_eps_rejects_alpha_bar_of_one():
    with pytest.raises(ValueError, match="no noise"):
        score_from_eps(torch.zeros(3, 2), 1.0)


@pytest.mark.parametrize("t, t_prev", [(999, 949), (500, 499), (40, -1), (999, -1)])
def test_euler_step_of_the_probability_flow_ode_is_ddim(t, t_prev):
    schedule = make_schedule("cosine")
    generator = torch.Generator().manual_seed(t)
    x_t, eps = torch.randn(4, 1, 8, 8, generator=generator), torch.randn(4, 1, 8, 8, generator=generator)
    ddim = ddim_step(x_t, t, t_prev, eps, schedule, eta=0.0).prev_sample
    assert torch.allclose(ode_euler_step(x_t, t, t_prev, eps, schedule), ddim, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("clip_x0", [None, 1.0])
def test_euler_sampler_reproduces_ddim_sample(clip_x0):
    mixture, schedule = make_toy_mixture(), make_schedule("linear")
    model = exact_noise_predictor(mixture, schedule)
    ddim = ddim_sample(model, (200, 2), schedule, steps=20, generator=torch.Generator().manual_seed(3),
                       spacing="trailing", clip_x0=clip_x0, capture_every=5, progress=False)
    euler = probability_flow_sample(model, (200, 2), schedule, steps=20, method="euler",
                                    generator=torch.Generator().manual_seed(3), clip_x0=clip_x0, capture_every=5, progress=False)
    assert torch.allclose(euler.samples, ddim.samples, atol=1e-4)
    assert euler.timesteps == ddim.timesteps  # and the captured x_0 estimates agree step by step
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(euler.pred_x0_trajectory, ddim.pred_x0_trajectory))


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
def test_ode_solvers_converge_to_the_closed_form_at_first_and_second_order(schedule_name):
    """For data N(0, s^2 I) the flow (7.7) is d x_bar / d sigma = sigma x_bar / (s^2 + sigma^2), so
    x_bar(0) = x_bar(sigma_T) * s / sqrt(s^2 + sigma_T^2): the error of each solver is known exactly."""
    std = 0.5
    schedule = make_schedule(schedule_name).to(dtype=torch.float64)
    model = gaussian_eps(std, schedule)
    x_init = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma_start = sigma_of(schedule.alpha_bar[-1])
    exact = x_init / schedule.alpha_bar[-1].sqrt() * std / (std**2 + sigma_start**2).sqrt()

    def error(method, steps):
        out = probability_flow_sample(model, (64, 2), schedule, steps, method, x_init=x_init, progress=False)
        return (out.samples - exact).abs().max().item()

    euler = [error("euler", n) for n in (20, 40, 80)]
    heun = [error("heun", n) for n in (20, 40, 80)]
    assert 1.6 < euler[0] / euler[1] < 2.6 and 1.6 < euler[1] / euler[2] < 2.6  # first order: half the step, half the error
    assert heun[0] / heun[1] > 2.5 and heun[1] / heun[2] > 2.5  # second order: about a quarter
    assert heun[1] < euler[2] / 2  # more accurate at fewer model calls (78 vs 80)


def test_heun_needs_its_first_step_to_be_euler_on_the_cosine_schedule():
    """Documents why probability_flow_sample takes an Euler first step: from sigma_T = 20,291 a
    trapezoid step to sigma ~ 10 is far off (measured here: about 100x the Euler error)."""
    std, schedule = 0.5, make_schedule("cosine").to(dtype=torch.float64)
    x = torch.ones(1, 2, dtype=torch.float64)
    sigma_t, sigma_prev = sigma_of(schedule.alpha_bar[-1]), sigma_of(schedule.alpha_bar[949])
    x_bar = x / schedule.alpha_bar[-1].sqrt()
    exact = x_bar * ((std**2 + sigma_prev**2) / (std**2 + sigma_t**2)).sqrt()

    def slope(x_bar, sigma):
        return sigma * x_bar / (std**2 + sigma**2)

    euler = x_bar + (sigma_prev - sigma_t) * slope(x_bar, sigma_t)
    trapezoid = x_bar + (sigma_prev - sigma_t) * 0.5 * (slope(x_bar, sigma_t) + slope(euler, sigma_prev))
    assert (trapezoid - exact).abs().max() > 30 * (euler - exact).abs().max()


@pytest.mark.parametrize("num_steps", [1, 2, 10, 50, 200])
def test_karras_timesteps_decrease_from_the_noisiest_to_the_cleanest(num_steps):
    schedule = make_schedule("cosine")
    timesteps = karras_timesteps(schedule, num_steps)
    assert len(timesteps) == num_steps and timesteps[0] == 999
    assert all(a > b for a, b in zip(timesteps, timesteps[1:]))
    if num_steps > 1:
        assert timesteps[-1] == 0
    if num_steps == 10:  # crowded at small sigma: the last step before clean data is much shorter than DDIM's
        trailing = ddim_timesteps(1000, 10, "trailing")
        assert sigma_of(schedule.alpha_bar[timesteps[-2]]) < sigma_of(schedule.alpha_bar[trailing[-2]]) / 2


def test_heun_gains_most_with_karras_spacing():
    """On the mixture with the exact score, against a 1000-step Heun reference: at 40 steps Heun
    with Karras spacing is more accurate than with evenly spaced timesteps, and than Euler with
    twice the model calls."""
    mixture, schedule = make_toy_mixture(), make_schedule("linear").to(dtype=torch.float64)
    model = exact_noise_predictor(mixture, schedule)
    x_init = torch.randn(500, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    reference = probability_flow_sample(model, (500, 2), schedule, 1000, "heun", x_init=x_init, progress=False).samples

    def error(method, steps, spacing):
        out = probability_flow_sample(model, (500, 2), schedule, steps, method, spacing=spacing, x_init=x_init, progress=False)
        return (out.samples - reference).norm(dim=1).mean().item()

    heun_karras = error("heun", 40, "karras")
    assert heun_karras < error("heun", 40, "trailing") / 2
    assert heun_karras < error("euler", 80, "trailing") / 2


def test_langevin_on_a_gaussian_matches_its_known_stationary_variance():
    """Unadjusted Langevin on N(mu, s^2) with step delta is an AR(1) chain whose stationary
    variance is s^2 / (1 - delta / (4 s^2)): slightly too wide, exactly computable."""
    mu, s, delta = 2.0, 0.5, 0.05
    x, _ = langevin_sample(lambda x: -(x - mu) / s**2, torch.zeros(20_000, 1, dtype=torch.float64), delta, 300,
                           torch.Generator().manual_seed(0))
    assert abs(x.mean().item() - mu) < 0.02
    assert abs(x.var().item() - s**2 / (1 - delta / (4 * s**2))) < 0.01


def test_annealed_langevin_finds_the_mixture_weights():
    mixture = make_toy_mixture()
    x_init = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha_bars = (1 - torch.logspace(0, -2, 20) * 0.99).tolist()  # noise variance 0.99 down to 0.0099
    samples = annealed_langevin_sample(lambda x, a: mixture.noised(a).score(x), x_init, alpha_bars, 30, 0.005,
                                       torch.Generator().manual_seed(2))
    summary = component_summary(mixture, samples.float())
    assert (summary.weights - mixture.weights).abs().max() < 0.03
    assert summary.far_fraction < 0.01
    # plain Langevin from the same start stays in the basin it starts in: wrong weights
    plain, _ = langevin_sample(mixture.score, x_init, 0.005, 600, torch.Generator().manual_seed(2))
    assert (component_summary(mixture, plain.float()).weights - mixture.weights).abs().max() > 0.1


def test_bad_inputs_explain():
    schedule = make_schedule("linear")
    with pytest.raises(ValueError, match="steps"):
        karras_timesteps(schedule, 0)
    with pytest.raises(ValueError, match="method"):
        probability_flow_sample(lambda x, t: x, (2, 2), schedule, 5, method="rk4", progress=False)
    with pytest.raises(ValueError, match="step_size"):
        langevin_sample(lambda x: x, torch.zeros(2, 2), 0.0, 10)
    with pytest.raises(ValueError, match="increase"):
        annealed_langevin_sample(lambda x, a: x, torch.zeros(2, 2), [0.9, 0.1], 5, 0.1)
    assert math.isclose(sigma_of(torch.tensor(0.5)).item(), 1.0)


def test_langevin_captures_after_every_k_steps_and_the_last():
    x, trajectory = langevin_sample(lambda x: -x, torch.zeros(3, 2), 0.1, 8, torch.Generator().manual_seed(0), capture_every=2)
    assert len(trajectory) == 4 and torch.equal(trajectory[-1], x)
    first, _ = langevin_sample(lambda x: -x, torch.zeros(3, 2), 0.1, 2, torch.Generator().manual_seed(0))
    assert torch.equal(trajectory[0], first)  # the first capture is after 2 steps, not before any
