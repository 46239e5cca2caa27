"""DDPM and DDIM steps against diffusers' schedulers, and the sampling loops."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffedu.course.device import randn
from diffedu.samplers import (
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    predict_x0_from_eps,
    q_posterior,
)
from diffedu.schedules import make_schedule, q_sample

SHAPE = (4, 1, 8, 8)


def _inputs(seed, t=500, schedule=None, dtype=torch.float32):
    """A realistic x_t (data in [-1, 1] noised to step t) and an imperfect eps prediction."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(SHAPE, generator=gen) * 2 - 1
    eps = torch.randn(SHAPE, generator=gen)
    x_t = q_sample(x0, t, eps, schedule or make_schedule("linear"))
    return x_t.to(dtype), (eps + 0.1 * torch.randn(SHAPE, generator=gen)).to(dtype)


def _diffusers_in(scheduler, schedule, dtype):
    """Give a diffusers scheduler exactly our constants (betas and alpha_bar) in `dtype`.

    diffusers would otherwise recompute alpha_bar from float32 betas; at the cosine
    schedule's clipped last step (beta = 0.999, alpha_bar ~ 2e-9) the float32 rounding of
    1 - beta alone moves pred_x0 ~ 4e4 by 1e-5 relative: a difference of inputs, not of steps.
    """
    scheduler.betas = schedule.betas.to(dtype)
    scheduler.alphas = 1 - scheduler.betas
    scheduler.alphas_cumprod = schedule.alpha_bar.to(dtype)
    return scheduler


# 1e-5 absolute where values are O(1); 1e-6 relative where the ill-conditioned last steps
# of the cosine schedule (alpha_bar ~ 1e-9) make them O(100).
CLOSE = dict(atol=1e-5, rtol=1e-6)
DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [999, 500, 37, 1, 0])
@pytest.mark.parametrize("variance, diffusers_variance", [("small", "fixed_small"), ("large", "fixed_large")])
@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ddpm_step_matches_diffusers(name, t, variance, diffusers_variance, clip, dtype):
    if dtype == torch.float32 and t < 10:
        pytest.skip(
            "in float32 diffusers re-derives beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} from a float32 "
            "alpha_bar ~ 0.9999, which keeps only 3-4 digits; float64 covers these steps"
        )
    schedule = make_schedule(name)
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, trained_betas=schedule.betas.numpy(), variance_type=diffusers_variance,
        clip_sample=clip is not None,
    )
    scheduler = _diffusers_in(scheduler, schedule, dtype)
    x_t, eps = _inputs(t, t, schedule, dtype)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1234), dtype=dtype)
    theirs = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(1234))
    ours = ddpm_step(x_t, t, eps, schedule, noise=noise, variance=variance, clip_x0=clip)
    assert torch.allclose(ours.prev_sample, theirs.prev_sample, **CLOSE)
    assert torch.allclose(ours.pred_x0, theirs.pred_original_sample, **CLOSE)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ddim_steps_match_diffusers(spacing, eta, clip, dtype):
    schedule = make_schedule("linear")
    scheduler = DDIMScheduler(
        num_train_timesteps=1000, trained_betas=schedule.betas.numpy(), clip_sample=clip is not None,
        timestep_spacing=spacing,
    )
    scheduler = _diffusers_in(scheduler, schedule, dtype)
    scheduler.set_timesteps(20)
    ours_timesteps = ddim_timesteps(1000, 20, spacing)
    assert scheduler.timesteps.tolist() == ours_timesteps
    for i, t in enumerate(ours_timesteps):
        x_t, eps = _inputs(i, t, schedule, dtype)
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(99 + i), dtype=dtype)
        t_prev = ours_timesteps[i + 1] if i + 1 < len(ours_timesteps) else -1
        theirs = scheduler.step(eps, t, x_t, eta=eta, variance_noise=noise, use_clipped_model_output=clip is not None)
        ours = ddim_step(x_t, t, t_prev, eps, schedule, eta=eta, noise=noise, clip_x0=clip)
        assert torch.allclose(ours.prev_sample, theirs.prev_sample, **CLOSE), t
        assert torch.allclose(ours.pred_x0, theirs.pred_original_sample, **CLOSE), t


def test_posterior_mean_equals_epsilon_form_of_the_reverse_mean():
    """Eq. (2.2) with x_0 = pred_x0 (2.4) equals eq. (2.5)."""
    s = make_schedule("linear").to(dtype=torch.float64)
    x_t, eps = _inputs(0, dtype=torch.float64)
    for t in (1, 100, 999):
        pred_x0 = predict_x0_from_eps(x_t, t, eps, s)
        mean, _ = q_posterior(pred_x0, x_t, t, s)
        eps_form = (x_t - s.betas[t] / (1 - s.alpha_bar[t]).sqrt() * eps) / s.alphas[t].sqrt()
        assert torch.allclose(mean, eps_form, atol=1e-5)


def test_q_posterior_is_the_true_conditional():
    """Monte Carlo: draw x_{t-1} ~ q(.|x_0), then x_t ~ q(x_t|x_{t-1}); among pairs, the
    regression of x_{t-1} on x_t (fixed x_0) has the posterior's slope and residual variance."""
    s = make_schedule("linear")
    t, x0 = 200, 0.5
    gen = torch.Generator().manual_seed(0)
    n = 400_000
    x_prev = q_sample(torch.full((n, 1), x0), t - 1, torch.randn(n, 1, generator=gen), s)
    x_t = s.alphas[t].sqrt() * x_prev + s.betas[t].sqrt() * torch.randn(n, 1, generator=gen)
    mean, var = q_posterior(torch.full((n, 1), x0), x_t, t, s)
    residual = x_prev - mean
    assert abs(residual.mean()) < 3e-4
    assert abs(residual.var() / var[0, 0] - 1) < 0.01


def test_ddim_eta_one_with_unit_stride_is_ddpm():
    """An identity of the math, so checked in float64 where rounding cannot hide a mistake."""
    s = make_schedule("cosine").to(dtype=torch.float64)
    noise = torch.randn(SHAPE, dtype=torch.float64)
    for t in (1, 400, 990):
        x_t, eps = _inputs(t, t, make_schedule("cosine"), torch.float64)
        a = ddim_step(x_t, t, t - 1, eps, s, eta=1.0, noise=noise)
        b = ddpm_step(x_t, t, eps, s, noise=noise, variance="small")
        assert torch.allclose(a.prev_sample, b.prev_sample, atol=1e-5, rtol=1e-6)


def _perfect_model_for(x0):
    """Knows the data is the single point x0, so eps = (x_t - sqrt(a) x0) / sqrt(1 - a)."""
    schedule = make_schedule("linear")

    def model(x_t, t):
        bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
        return (x_t - bar.sqrt() * x0) / (1 - bar).sqrt()

    return model, schedule


def test_sampling_loops_reach_a_known_point_and_are_reproducible():
    x0 = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    model, s = _perfect_model_for(x0)
    ddpm = ddpm_sample(model, SHAPE, s, generator=torch.Generator().manual_seed(0), capture_every=250, progress=False)
    assert torch.allclose(ddpm.samples, x0.expand(SHAPE), atol=1e-3)
    # index i of the capture is one moment: its time, x there, and the estimate of x_0 made from that x
    assert ddpm.timesteps == [999, 749, 499, 249, -1] and len(ddpm.trajectory) == len(ddpm.pred_x0_trajectory) == 5
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ddpm.trajectory[0], x_T) and torch.equal(ddpm.trajectory[-1], ddpm.samples)
    assert torch.allclose(ddpm.pred_x0_trajectory[0], predict_x0_from_eps(x_T, 999, model(x_T, torch.full((SHAPE[0],), 999)), s))
    assert torch.equal(ddpm.pred_x0_trajectory[-1], ddpm.samples)
    ddim = ddim_sample(model, SHAPE, s, steps=10, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.allclose(ddim.samples, x0.expand(SHAPE), atol=1e-3)
    again = ddim_sample(model, SHAPE, s, steps=10, eta=1.0, generator=torch.Generator().manual_seed(5), progress=False)
    twice = ddim_sample(model, SHAPE, s, steps=10, eta=1.0, generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(again.samples, twice.samples)


def test_ddim_with_eta_zero_is_deterministic_given_x_T():
    s = make_schedule("linear")
    def model(x, t):
        return x * (t.float() / (t.float() + 1)).reshape(-1, 1, 1, 1)  # diffusers' fake model
    a = ddim_sample(model, SHAPE, s, steps=25, generator=torch.Generator().manual_seed(7), progress=False)
    b = ddim_sample(model, SHAPE, s, steps=25, generator=torch.Generator().manual_seed(7), progress=False)
    assert torch.equal(a.samples, b.samples)
    x_T = randn(SHAPE, torch.Generator().manual_seed(7))
    assert not torch.allclose(a.samples, x_T)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, x, e: ddpm_step(x, 5, e, s), "needs `noise`"),
        (lambda s, x, e: ddpm_step(x, 1000, e, s, noise=e), r"timestep k must be in \[0, 999\]"),
        (lambda s, x, e: ddpm_step(x, 5, e, s, noise=e, variance="tiny"), "variance must be"),
        (lambda s, x, e: ddpm_step(x, 5, e[:2], s, noise=e), "same shape"),
        (lambda s, x, e: ddim_step(x, 5, 5, e, s), "k_next must satisfy"),
        (lambda s, x, e: ddim_step(x, 5, 2, e, s, eta=2.0), "eta must be in"),
        (lambda s, x, e: ddim_step(x, 5, 2, e, s, eta=0.5), "needs `noise`"),
        (lambda s, x, e: ddim_timesteps(1000, 0), "steps must be in"),
        (lambda s, x, e: ddim_timesteps(1000, 10, "middle"), "spacing must be"),
        (lambda s, x, e: ddpm_sample(lambda x, t: x[:, :1], (2, 3), s, progress=False), "model returned shape"),
    ],
)
def test_bad_input_raises_helpful_errors(call, message):
    x, e = _inputs(0)
    with pytest.raises(ValueError, match=message):
        call(make_schedule("linear"), x, e)


@pytest.mark.parametrize("clip", [None, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_ddpm_is_ddim_with_eta_one(clip, dtype):
    """diffusers' DDPMScheduler with 20 inference steps takes DDPM's posterior step between
    strided timesteps; that is ddim_step with eta = 1 (what generate's "ancestral" does)."""
    schedule = make_schedule("linear")
    scheduler = DDPMScheduler(num_train_timesteps=1000, trained_betas=schedule.betas.numpy(),
                              variance_type="fixed_small", clip_sample=clip is not None, timestep_spacing="trailing")
    scheduler = _diffusers_in(scheduler, schedule, dtype)
    scheduler.set_timesteps(20)
    ours_timesteps = ddim_timesteps(1000, 20, "trailing")
    assert scheduler.timesteps.tolist() == ours_timesteps
    for i, t in enumerate(ours_timesteps[:-1]):  # diffusers' last step goes to t = -1 via its own rule
        x_t, eps = _inputs(i, t, schedule, dtype)
        theirs = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(7 + i))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7 + i), dtype=dtype)
        ours = ddim_step(x_t, t, ours_timesteps[i + 1], eps, schedule, eta=1.0, noise=noise, clip_x0=clip)
        assert torch.allclose(ours.prev_sample, theirs.prev_sample, **CLOSE), t
