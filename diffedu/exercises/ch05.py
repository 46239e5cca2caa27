"""Exercises of chapter 05 (Stable Diffusion through Diffusers). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import torch

from diffedu.exercises import (
    ExerciseError, exercise, expect_close, expect_tensor, expect_whole_number, reject_known_mistakes, require_answer,
)

# The parts of SD v1.5's VAE config (vae/config.json of the model) that fix the latent's shape.
SD15_VAE_CONFIG = {"latent_channels": 4, "block_out_channels": [128, 256, 512, 512]}


def latent_shape(vae_config: dict, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
    """The latent (B, C, H, W) of an AutoencoderKL for an image height x width: each down block
    but the last halves the sides, as Diffusers' pipelines compute vae_scale_factor."""
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return batch, vae_config["latent_channels"], height // factor, width // factor


def img2img_unet_calls(num_inference_steps: int, strength: float) -> int:
    """How many denoising steps image-to-image runs: StableDiffusionImg2ImgPipeline.get_timesteps
    keeps the last int(num_inference_steps * strength) of the scheduler's timesteps."""
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    t_start = max(num_inference_steps - init_timestep, 0)
    return num_inference_steps - t_start


@exercise("5.1")
def check_guided_noise(guided_noise) -> None:
    """Exercise 5.1: classifier-free guidance with the empty prompt, eq. (5.2)."""
    gen = torch.Generator().manual_seed(5)
    eps_empty, eps_text = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    for w in (7.5, 1.0, 0.0):
        output = guided_noise(eps_empty.clone(), eps_text.clone(), w)
        result = expect_tensor(output, (2, 4, 8, 8), "the guided noise")
        expected = eps_empty + w * (eps_text - eps_empty)
        if torch.allclose(result, expected, atol=1e-5):
            continue
        mistakes = [
            ((1 + w) * eps_text - w * eps_empty,
             "that is Ho & Salimans' form (1 + w) eps_text - w eps_empty, whose w counts from 0 = plain text "
             "prediction: the paper's w is our w - 1 (and Diffusers' guidance_scale is our w). With the w of (5.2), "
             "w = 1 must give eps_text: eps_empty + w (eps_text - eps_empty)"),
            (eps_empty + w * (eps_empty - eps_text),
             "the direction points from the empty prompt towards the text: (eps_text - eps_empty)"),
            (w * eps_text,
             "scaling the text prediction is not guidance; (5.2) extrapolates away from the empty prompt"),
        ]
        reject_known_mistakes(result, mistakes, opening=f"with w = {w}: ")
        expect_close(result, expected, f"with w = {w}: eps_empty + w * (eps_text - eps_empty); w = 0 must give "
                     "eps_empty and w = 1 eps_text")


@exercise("5.2")
def check_latent_shape(answer) -> None:
    """Exercise 5.2: SD v1.5's latent for a 768 x 512 image (height x width)."""
    require_answer(answer)
    if isinstance(answer, torch.Tensor):
        raise ExerciseError("answer with the shape as a tuple of four whole numbers, like (1, C, H, W), not a tensor")
    try:
        shape = tuple(int(x) for x in answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"answer with a tuple of four whole numbers, like (1, C, H, W); got {answer!r}") from None
    height, width = 768, 512
    expected = latent_shape(SD15_VAE_CONFIG, height, width)
    if shape == expected:
        return
    batch, channels, rows, columns = expected
    factor = height // rows
    if len(shape) != 4:
        raise ExerciseError(f"give all four numbers (batch, channels, height, width), got {len(shape)}: {shape}")
    if shape == (batch, channels, columns, rows):
        raise ExerciseError(f"height comes first: {height} / {factor} rows, {width} / {factor} columns")
    if shape in ((batch, 3, rows, columns), (batch, 3, height, width)):
        raise ExerciseError(f"the latent has the VAE's {channels} channels, not the image's 3 colours")
    if shape == (batch, channels, height, width):
        raise ExerciseError(f"the latent's sides are {factor}x smaller than the image's")
    if shape[:2] == (batch, channels) and shape[2] * width == shape[3] * height and shape[2] != rows:
        raise ExerciseError(f"that shrinks each side {height // shape[2] if shape[2] else '?'}x; SD v1.5's VAE "
                            f"shrinks each side {factor}x (the mini SD's smaller VAE shrinks 4x)")
    raise ExerciseError(f"divide each side by the VAE's factor {factor} and use its {channels} latent channels: "
                        f"(1, {channels}, H / {factor}, W / {factor})")


@exercise("5.3")
def check_img2img_steps(answer) -> None:
    """Exercise 5.3: UNet calls of image-to-image with 50 steps and strength 0.6."""
    steps = expect_whole_number(answer, "a number of UNet calls")
    num_inference_steps, strength = 50, 0.6
    expected = img2img_unet_calls(num_inference_steps, strength)
    if steps == expected:
        return
    if steps == num_inference_steps - expected:
        raise ExerciseError(f"that is the number of steps skipped: strength is the share of the steps that run, "
                            f"counted from the noisy end: {strength} of {num_inference_steps}")
    if steps in (2 * expected, 2 * num_inference_steps):
        raise ExerciseError("with guidance the text and empty-prompt halves run as one batch: count one call per step")
    if steps == num_inference_steps:
        raise ExerciseError("image-to-image skips the noisiest steps: it starts from the noised input, not from pure noise")
    raise ExerciseError("read get_timesteps: it keeps the last int(num_inference_steps * strength) timesteps")
