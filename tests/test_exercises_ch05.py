"""Chapter 05 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline

from diffedu.exercises import ch05
from solutions import ch05 as reference
from exercise_helpers import stub, wrong_message

MINI_SD_VAE = Path(__file__).resolve().parent.parent / "data" / "checkpoints" / "mini-sd" / "vae"


def test_stubs_are_not_attempted(capsys):
    for result in (ch05.check_guided_noise(stub), ch05.check_latent_shape(...), ch05.check_img2img_steps(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch05.check_guided_noise(reference.solution_guided_noise)) == "Exercise 5.1: correct"
    assert ch05.check_latent_shape(reference.SOLUTION_5_2)
    assert ch05.check_latent_shape([1, 4, 96, 64])
    assert ch05.check_latent_shape(torch.Size([1, 4, 96, 64]))
    assert ch05.check_img2img_steps(reference.SOLUTION_5_3)
    assert ch05.check_img2img_steps(30.0)
    assert torch.equal(reference.solution_guided_noise(torch.zeros(1), torch.ones(1), 2.0), torch.full((1,), 2.0))


def test_guidance_in_ho_and_salimans_convention_is_right_once_w_is_converted():
    """Their (1 + w') eps_text - w' eps_empty with w' = w - 1 is (5.2)."""
    assert ch05.check_guided_noise(lambda e, t, w: (1 + (w - 1)) * t - (w - 1) * e)


def test_the_img2img_answer_is_what_diffusers_does():
    """Exercise 5.3's answer, from the pipeline's own get_timesteps, for several settings."""
    scheduler = DDIMScheduler()
    pipe = StableDiffusionImg2ImgPipeline.__new__(StableDiffusionImg2ImgPipeline)
    pipe.scheduler = scheduler
    for num_inference_steps, strength in [(50, 0.6), (50, 1.0), (20, 0.75), (30, 0.33), (10, 0.05)]:
        scheduler.set_timesteps(num_inference_steps)
        timesteps, steps = pipe.get_timesteps(num_inference_steps, strength, "cpu")
        assert steps == len(timesteps) == ch05.img2img_unet_calls(num_inference_steps, strength)
    assert ch05.img2img_unet_calls(50, 0.6) == reference.SOLUTION_5_3


def test_the_latent_shape_rule_matches_the_shipped_vae():
    """latent_shape reads a VAE config as Diffusers does; check it on the mini SD's real VAE."""
    config = json.loads((MINI_SD_VAE / "config.json").read_text())
    vae = AutoencoderKL.from_pretrained(MINI_SD_VAE)
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, config["in_channels"], 32, 32)).latent_dist.mean
    assert tuple(latent.shape) == ch05.latent_shape(config, 32, 32) == (1, 4, 8, 8)
    assert ch05.latent_shape(ch05.SD15_VAE_CONFIG, 768, 512) == reference.SOLUTION_5_2


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda e, t, w: (1 + w) * t - w * e, "the paper's w is our w - 1"),
        (lambda e, t, w: t + w * (t - e), "Ho & Salimans' form"),
        (lambda e, t, w: e + w * (e - t), "direction"),
        (lambda e, t, w: w * t, "not guidance"),
        (lambda e, t, w: e + t, "w = 0 must give"),
        (lambda e, t, w: None, "returned None"),
        (lambda e, t, w: e + w * (t - e).tolist(), "^your code raised TypeError"),
    ],
)
def test_guidance_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch05.check_guided_noise(wrong)))


@pytest.mark.parametrize(
    "answer, phrase",
    [
        ((1, 4, 64, 96), "height comes first"),
        ((1, 3, 96, 64), "not the image's 3 colours"),
        ((1, 4, 768, 512), "8x smaller"),
        ((1, 4, 192, 128), "shrinks each side 4x"),
        ((4, 96, 64), "all four numbers"),
        ((1, 4, 100, 60), "divide each side"),
        ("1, 4, 96, 64", "four whole numbers"),
        (torch.zeros(1, 4, 96, 64), "not a tensor"),
    ],
)
def test_latent_shape_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch05.check_latent_shape(answer))


@pytest.mark.parametrize(
    "answer, phrase",
    [
        (20, "0.6 of 50"),
        (60, "one call per step"),
        (100, "one call per step"),
        (50, "skips the noisiest steps"),
        (30.9, "whole number"),
        (29.5, "whole number"),
        (31, "get_timesteps"),
        ("thirty", "a number"),
    ],
)
def test_img2img_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch05.check_img2img_steps(answer))
