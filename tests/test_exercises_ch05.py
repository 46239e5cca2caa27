"""Chapter 05 checkers: stub -> not attempted, wrong -> hint (the idea first, the formula late), reference -> correct."""

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline

from diffedu.exercises import ch05
from solutions import ch05 as reference
from exercise_helpers import hint_stages, stub, wrong_message

MINI_SD = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "mini-sd"


def test_stubs_are_not_attempted(capsys):
    for result in (ch05.check_img2img_start(stub), ch05.check_negative_prompt_at_w1(...), ch05.check_latent_shape(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch05.check_img2img_start(reference.solution_img2img_start)) == "Exercise 5.1: correct"
    assert ch05.check_negative_prompt_at_w1(reference.SOLUTION_5_2)
    assert ch05.check_negative_prompt_at_w1(torch.tensor(0.0))
    assert ch05.check_latent_shape(reference.solution_latent_shape)
    assert ch05.check_latent_shape(lambda config, h, w: torch.Size(reference.solution_latent_shape(config, h, w)))


def test_the_img2img_start_is_what_the_pipeline_does():
    """The reference start equals Diffusers' get_timesteps + scheduler.add_noise (what prepare_latents does)."""
    gen = torch.Generator().manual_seed(0)
    clean, noise = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    for config in ch05.SCHEDULER_CONFIGS.values():
        for steps, strength in [(20, 0.6), (20, 1.0), (50, 0.33), (10, 0.15)]:
            scheduler = DDIMScheduler.from_config(config)
            pipe = StableDiffusionImg2ImgPipeline.__new__(StableDiffusionImg2ImgPipeline)
            pipe.scheduler = scheduler
            scheduler.set_timesteps(steps)
            timesteps, _ = pipe.get_timesteps(steps, strength, "cpu")
            theirs = scheduler.add_noise(clean, noise, timesteps[:1])
            ours = reference.solution_img2img_start(clean, noise, strength, DDIMScheduler.from_config(config), steps)
            assert torch.allclose(ours, theirs, atol=1e-6)
            assert int(timesteps[0]) == ch05.img2img_first_timestep(DDIMScheduler.from_config(config), steps, strength)


def test_the_mini_configs_are_the_shipped_ones():
    vae_config = json.loads((MINI_SD / "vae" / "config.json").read_text())
    assert {k: vae_config[k] for k in ch05.MINI_VAE_CONFIG} == ch05.MINI_VAE_CONFIG
    scheduler_config = json.loads((MINI_SD / "scheduler" / "scheduler_config.json").read_text())
    assert {k: scheduler_config[k] for k in ch05.SCHEDULER_CONFIGS["trailing"]} == ch05.SCHEDULER_CONFIGS["trailing"]


def test_the_latent_shape_rule_matches_the_shipped_vae():
    vae = AutoencoderKL.from_pretrained(MINI_SD / "vae")
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 1, 64, 32)).latent_dist.mean
    assert tuple(latent.shape) == ch05.latent_shape(ch05.MINI_VAE_CONFIG, 64, 32) == reference.solution_latent_shape(
        ch05.MINI_VAE_CONFIG, 64, 32)
    assert ch05.latent_shape(ch05.SD15_VAE_CONFIG, 768, 512) == (1, 4, 96, 64)


def _noised(clean, noise, alpha_bar):
    return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise


def _start_at(pick):
    def img2img_start(clean, noise, strength, scheduler, steps):
        scheduler.set_timesteps(steps)
        return _noised(clean, noise, scheduler.alphas_cumprod[pick(scheduler.timesteps, strength, steps)])
    return img2img_start


def _no_square_roots(clean, noise, strength, scheduler, steps):
    scheduler.set_timesteps(steps)
    alpha_bar = scheduler.alphas_cumprod[scheduler.timesteps[steps - int(steps * strength)]]
    return alpha_bar * clean + (1 - alpha_bar) * noise


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (_start_at(lambda ts, s, n: ts[0]), "noisiest step whatever the strength"),
        (_start_at(lambda ts, s, n: ts[min(int(n * s), n - 1)]), "share of the steps that RUN"),
        (_start_at(lambda ts, s, n: min(int(s * 1000), 999)), "not a point of the 1000-step training schedule"),
        (_no_square_roots, "square roots"),
        (_start_at(lambda ts, s, n: ts[-1]), "find the first timestep k"),
        (lambda c, n, s, sch, st: None, "returned None"),
        (lambda c, n, s, sch, st: c[0], "shape"),
        (lambda c, n, s, sch, st: c + "x", "^your code raised TypeError"),
    ],
)
def test_img2img_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch05.check_img2img_start(wrong)))


def test_img2img_hints_come_in_stages():
    first, _, third = hint_stages(ch05.check_img2img_start, _start_at(lambda ts, s, n: ts[-1]))
    assert "The formula" not in first and "sqrt(" not in first
    assert "The formula: k = timesteps[steps - int(steps * strength)]" in third


@pytest.mark.parametrize("answer, phrase", [(0.3, "same seed"), (-0.1, "cannot be negative"), ("zero", "a number")])
def test_negative_prompt_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch05.check_negative_prompt_at_w1(answer))


def test_negative_prompt_hints_come_in_stages():
    first, _, third = hint_stages(ch05.check_negative_prompt_at_w1, 0.4)
    assert "eps_text - eps_neg" not in first and "The formula" not in first
    assert "eps_neg + 1 * (eps_text - eps_neg) = eps_text" in third


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda c, h, w: (1, c["latent_channels"], w // 4, h // 4) if c["in_channels"] == 1 else (1, 4, w // 8, h // 8),
         "height comes first"),
        (lambda c, h, w: (1, c["in_channels"], h // 8, w // 8), "the image's channels"),
        (lambda c, h, w: (1, 4, h // 2 ** (len(c["block_out_channels"]) - 2), w // 2 ** (len(c["block_out_channels"]) - 2)),
         "one halving too few"),
        (lambda c, h, w: (1, 4, h // 2 ** len(c["block_out_channels"]), w // 2 ** len(c["block_out_channels"])),
         "one halving too many"),
        (lambda c, h, w: (1, 4, h // 8, w // 8), "for the mini VAE"),
        (lambda c, h, w: (4, h // 8, w // 8), "all four numbers"),
        (lambda c, h, w: "1, 4, 96, 64", "four whole numbers"),
        (lambda c, h, w: torch.zeros(1, 4, 8, 8), "not a tensor"),
    ],
)
def test_latent_shape_mistakes_get_their_hint(wrong, phrase):
    assert phrase in wrong_message(ch05.check_latent_shape(wrong))


def test_latent_shape_hints_come_in_stages():
    wrong = lambda c, h, w: (1, 4, h // 8, w // 8)  # noqa: E731 - the hard-coded SD factor
    first, _, third = hint_stages(ch05.check_latent_shape, wrong)
    assert "2 **" not in first and "The formula: factor = 2 ** (len(block_out_channels) - 1)" in third
