"""diffedu.editing (chapter 10): DDIM inversion (10.9) undoes a DDIM step exactly for the same noise
prediction, round-trips the toy mixture with its exact model, and negative-prompt inversion makes
guided predictions equal the conditional one for the source prompt; restoration.denoise_states
starts where the observation's noise matches the schedule's."""

import pytest
import torch

from diffedu.editing import ddim_inversion_states, ddim_inversion_step
from diffedu.restoration import denoise_states, matching_timestep
from diffedu.samplers import ddim_states, ddim_step, ddim_timesteps
from diffedu.schedules import make_schedule
from diffedu.toy import exact_noise_predictor, make_toy_mixture

SCHEDULE = make_schedule("cosine")


def last(states) -> torch.Tensor:
    x = None
    for step in states:
        x = step.prev_sample
    return x


@pytest.mark.parametrize("k, k_next", [(-1, 20), (100, 300), (700, 999)])
def test_an_inversion_step_is_the_ddim_step_run_backwards(k, k_next):
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64), torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    schedule = SCHEDULE.to(dtype=torch.float64)
    up = ddim_inversion_step(x, k, k_next, eps, schedule).prev_sample
    back = ddim_step(up, k_next, k, eps, schedule).prev_sample  # the same eps: (2.7) undoes (10.9) exactly
    assert torch.allclose(back, x, atol=1e-9)


def test_inversion_goes_up_in_noise_only():
    with pytest.raises(ValueError, match="goes up in noise"):
        ddim_inversion_step(torch.zeros(1, 2), 300, 100, torch.zeros(1, 2), SCHEDULE)


def test_inversion_round_trips_the_toy_mixture_with_its_exact_model():
    mixture = make_toy_mixture()
    model = exact_noise_predictor(mixture, SCHEDULE)
    x0, _ = mixture.sample(200, torch.Generator().manual_seed(1))  # (200, 2)
    timesteps = ddim_timesteps(1000, 200)
    x_T = last(ddim_inversion_states(model, x0, SCHEDULE, timesteps))
    back = last(ddim_states(model, x_T, SCHEDULE, timesteps))
    error = (back - x0).norm(dim=1)
    assert error.median() < 0.01 and error.max() < 0.1, (error.median(), error.max())
    # x_T looks like noise: about N(0, I), as the probability-flow ODE says it should
    assert x_T.mean(0).abs().max() < 0.25 and (x_T.std(0) - 1).abs().max() < 0.25
    # one sample at a time gives the same x_T (no batch statistics)
    single = last(ddim_inversion_states(model, x0[:1], SCHEDULE, timesteps))
    assert torch.allclose(single, x_T[:1], atol=1e-5)


def test_denoising_starts_where_the_noise_matches():
    k = matching_timestep(SCHEDULE, 0.5)
    ratio = ((1 - SCHEDULE.alpha_bar[k]) / SCHEDULE.alpha_bar[k]).sqrt()
    assert abs(ratio - 0.5) < 0.01
    with pytest.raises(ValueError, match="sigma_y > 0"):
        matching_timestep(SCHEDULE, 0.0)
    # with the exact model of a one-point "data set" at c, denoising returns c whatever the noise
    c = torch.tensor([[0.3, -0.2]])
    mixture = make_toy_mixture()
    point = type(mixture)(weights=torch.ones(1, dtype=torch.float64), means=c.double(), stds=torch.full((1,), 1e-3, dtype=torch.float64))
    y = c + 0.5 * torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    restored = last(denoise_states(exact_noise_predictor(point, SCHEDULE), y, SCHEDULE, 20, 0.5))
    assert torch.allclose(restored, c.expand(64, 2), atol=1e-2)


def test_negative_prompt_inversion_makes_guidance_the_conditional_prediction():
    from diffedu.editing import text_predictor
    from diffedu.sd.mini import load_pipeline

    pipe = load_pipeline()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    k = torch.tensor([500, 500])
    prompts = ["a handwritten 3", "a handwritten 7"]
    with torch.no_grad():
        plain = text_predictor(pipe, prompts)(z, k)
        guided_against_itself = text_predictor(pipe, prompts, guidance=3.0, negative_prompts=prompts)(z, k)
        guided = text_predictor(pipe, prompts, guidance=3.0)(z, k)
    assert torch.allclose(guided_against_itself, plain, atol=1e-5)
    assert not torch.allclose(guided, plain, atol=1e-3)  # ordinary guidance changes the prediction
