"""Schedules and the forward process, cross-checked against diffusers and by Monte Carlo."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from diffedu.schedules import make_schedule, q_sample, schedule_from_betas


@pytest.mark.parametrize("name, diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_betas_and_alpha_bar_match_diffusers(name, diffusers_name):
    ours = make_schedule(name)
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name)
    assert torch.allclose(ours.betas, theirs.betas, atol=1e-7, rtol=1e-5)
    assert torch.allclose(ours.alpha_bar, theirs.alphas_cumprod, atol=1e-6, rtol=1e-4)


def test_schedule_constants_are_consistent():
    s = make_schedule("linear")
    assert s.betas.dtype == s.alpha_bar.dtype == torch.float32
    assert torch.allclose(s.alphas, 1 - s.betas)
    expected = torch.cumprod(1 - s.betas.double(), 0)
    assert torch.allclose(s.alpha_bar.double(), expected, rtol=1e-6)
    assert torch.allclose(s.snr, s.alpha_bar / (1 - s.alpha_bar), rtol=1e-5)
    # both schedules run from (almost) clean data to (almost) pure noise
    for name in ("linear", "cosine"):
        bar = make_schedule(name).alpha_bar
        assert bar[0] > 0.999 and bar[-1] < 1e-4 and (bar[1:] < bar[:-1]).all()


def test_cosine_alpha_bar_follows_nichol_dhariwal_formula():
    s = make_schedule("cosine")
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    # equal until the beta clip at 0.999 bites at the very end
    assert torch.allclose(s.alpha_bar[:990].double(), f[:990], rtol=1e-5, atol=1e-7)


def test_q_sample_closed_form_matches_iterated_chain():
    """Eq. (1.5) against iterating eq. (1.2) 300 times on 200k samples of x_0 = 0.7."""
    s = make_schedule("linear")
    gen = torch.Generator().manual_seed(0)
    x = torch.full((200_000,), 0.7, dtype=torch.float64)
    t = 299
    for step in range(t + 1):
        a = s.alphas[step].double()
        x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    bar = s.alpha_bar[t].double()
    assert abs(x.mean() - bar.sqrt() * 0.7) < 0.01  # std error 0.002
    assert abs(x.var() - (1 - bar)) < 0.01
    closed = q_sample(torch.full((1,), 0.7), t, torch.zeros(1), s)
    assert torch.allclose(closed.double(), bar.sqrt() * 0.7, atol=1e-6)


def test_q_sample_per_sample_timesteps_and_shapes():
    s = make_schedule("cosine")
    x0 = torch.randn(4, 1, 8, 8)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 10, 500, 999])
    out = q_sample(x0, t, noise, s)
    assert out.shape == x0.shape
    for i in range(4):
        bar = s.alpha_bar[t[i]]
        assert torch.allclose(out[i], bar.sqrt() * x0[i] + (1 - bar).sqrt() * noise[i], atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: make_schedule("quadratic"), "unknown schedule 'quadratic'"),
        (lambda s: make_schedule("linear", 0), "num_train_timesteps must be a positive int"),
        (lambda s: q_sample(torch.zeros(2, 3), 1000, torch.zeros(2, 3), s), r"timestep k must be in \[0, 999\], got 1000"),
        (lambda s: q_sample(torch.zeros(2, 3), -1, torch.zeros(2, 3), s), r"timestep k must be in \[0, 999\], got -1"),
        (lambda s: q_sample(torch.zeros(2, 3), 5, torch.zeros(2, 4), s), "same shape"),
        (lambda s: q_sample(torch.full((2, 3), float("nan")), 5, torch.zeros(2, 3), s), "NaN"),
        (lambda s: q_sample(torch.zeros(2, 3), torch.tensor([1, 2, 3]), torch.zeros(2, 3), s), "one timestep per sample"),
        (lambda s: q_sample([0.0], 1, torch.zeros(1), s), "must be a torch.Tensor"),
        (lambda s: schedule_from_betas(torch.tensor([0.1, 1.5])), r"lie in \(0, 1\)"),
    ],
)
def test_bad_input_raises_helpful_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(make_schedule("linear"))
