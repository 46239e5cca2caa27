"""Exercises of chapter 05 (Stable Diffusion through Diffusers). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor, require_answer

# The parts of SD v1.5's VAE config (vae/config.json of the model) that fix the latent's shape.
SD15_VAE_CONFIG = {"latent_channels": 4, "block_out_channels": [128, 256, 512, 512], "in_channels": 3}
# The mini SD's VAE (data/checkpoints/mini-sd/vae/config.json), the same keys.
MINI_VAE_CONFIG = {"latent_channels": 4, "block_out_channels": [16, 32, 64], "in_channels": 1}
# The mini SD's scheduler (trailing spacing) and SD v1.5's (leading spacing, steps_offset 1), as DDIM.
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                clip_sample=False, set_alpha_to_one=False, steps_offset=1)
SCHEDULER_CONFIGS = {"trailing": {**SCHEDULE, "timestep_spacing": "trailing"}, "leading": {**SCHEDULE, "timestep_spacing": "leading"}}


def latent_shape(vae_config: dict, height: int, width: int, batch: int = 1) -> tuple[int, int, int, int]:
    """The latent (B, C, H, W) of an AutoencoderKL for an image height x width: each down block
    but the last halves the sides, as Diffusers' pipelines compute vae_scale_factor."""
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    return batch, vae_config["latent_channels"], height // factor, width // factor


def img2img_first_timestep(scheduler, num_inference_steps: int, strength: float) -> int:
    """The code timestep image-to-image starts from: StableDiffusionImg2ImgPipeline.get_timesteps keeps
    the last int(num_inference_steps * strength) of the scheduler's timesteps."""
    scheduler.set_timesteps(num_inference_steps)
    runs = min(int(num_inference_steps * strength), num_inference_steps)
    return int(scheduler.timesteps[num_inference_steps - runs])


def _noised(clean: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    return alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise


@exercise("5.1")
def check_img2img_start(img2img_start) -> None:
    """Exercise 5.1: the starting latent of image-to-image, for several strengths and two spacings."""
    gen = torch.Generator().manual_seed(5)
    clean, noise = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    for spacing, config in SCHEDULER_CONFIGS.items():
        for strength in (0.6, 0.25, 1.0):
            steps = 20
            scheduler = DDIMScheduler.from_config(config)
            output = img2img_start(clean.clone(), noise.clone(), strength, scheduler, steps)
            result = expect_tensor(output, tuple(clean.shape), "the starting latent")
            alpha_bars = DDIMScheduler.from_config(config).alphas_cumprod
            reference = DDIMScheduler.from_config(config)
            first = img2img_first_timestep(reference, steps, strength)
            expected = _noised(clean, noise, alpha_bars[first])
            if torch.allclose(result, expected, atol=1e-5):
                continue
            setting = f"with strength {strength}, {steps} steps, {spacing} spacing: "
            timesteps = reference.timesteps
            if torch.allclose(result, _noised(clean, noise, alpha_bars[int(timesteps[0])]), atol=1e-5):
                raise ExerciseError(setting + "you start at the noisiest step whatever the strength: strength says how many "
                                    "of the steps run, and img2img skips the first ones")
            wrong_end = int(timesteps[min(int(steps * strength), steps - 1)])
            if torch.allclose(result, _noised(clean, noise, alpha_bars[wrong_end]), atol=1e-5):
                raise ExerciseError(setting + "that skips int(steps * strength) steps; strength is the share of the steps "
                                    "that RUN, counted from the noisy end", formula="k = timesteps[steps - int(steps * strength)]")
            through_training = min(int(strength * 1000), 999)
            if torch.allclose(result, _noised(clean, noise, alpha_bars[through_training]), atol=1e-5):
                raise ExerciseError(setting + "strength picks one of the sampler's timesteps (scheduler.timesteps after "
                                    "set_timesteps), not a point of the 1000-step training schedule")
            alpha_bar = alpha_bars[first]
            if torch.allclose(result, alpha_bar * clean + (1 - alpha_bar) * noise, atol=1e-5):
                raise ExerciseError(setting + "(1.5) mixes with square roots: the weights keep the variance at 1",
                                    formula="sqrt(alpha_bar_k) * z_0 + sqrt(1 - alpha_bar_k) * noise")
            expect_close(result, expected, setting + "find the first timestep k that runs, then noise z_0 to it with (1.5)",
                         formula="k = timesteps[steps - int(steps * strength)]; sqrt(alpha_bar_k) z_0 + sqrt(1 - alpha_bar_k) noise")


@exercise("5.2")
def check_negative_prompt_at_w1(answer) -> None:
    """Exercise 5.2: the largest pixel change that a negative prompt makes at guidance 1."""
    change = expect_number(answer, "the largest absolute pixel difference")
    if change < 0:
        raise ExerciseError("a largest absolute difference cannot be negative: take .abs() before .max()")
    if change <= 1e-4:
        return
    raise ExerciseError("run both with the same seed (a fresh torch.Generator().manual_seed(0) each time), and read (5.2) "
                        "with the negative prompt's noise prediction as the unconditional one: what is left at w = 1?",
                        formula="at w = 1, eps_neg + 1 * (eps_text - eps_neg) = eps_text: the negative prompt cancels, "
                        "so Diffusers does not even run it (guidance_scale > 1 switches guidance on)")


@exercise("5.3")
def check_latent_shape(latent_shape_of) -> None:
    """Exercise 5.3: the latent shape of an AutoencoderKL, from its config, for an image height x width."""
    for name, config, height, width in (("the mini VAE", MINI_VAE_CONFIG, 32, 32), ("SD v1.5's VAE", SD15_VAE_CONFIG, 768, 512),
                                        ("SD v1.5's VAE", SD15_VAE_CONFIG, 512, 512), ("the mini VAE", MINI_VAE_CONFIG, 64, 32)):
        answer = latent_shape_of(dict(config), height, width)
        require_answer(answer)
        if isinstance(answer, torch.Tensor) and answer.ndim > 0 and answer.numel() > 4:
            raise ExerciseError("return the shape as a tuple of four whole numbers, like (1, C, H, W), not a tensor")
        try:
            shape = tuple(int(x) for x in answer)
        except (TypeError, ValueError):
            raise ExerciseError(f"return a tuple of four whole numbers, like (1, C, H, W); got {answer!r}") from None
        expected = latent_shape(config, height, width)
        if shape == expected:
            continue
        batch, channels, rows, columns = expected
        factor = height // rows
        where = f"for {name} and a {height} x {width} image: "
        if len(shape) != 4:
            raise ExerciseError(where + f"give all four numbers (batch, channels, height, width), got {len(shape)}: {shape}")
        if shape == (batch, channels, columns, rows) and rows != columns:
            raise ExerciseError(where + "height comes first, as in (B, C, H, W)")
        if shape[1] == config["in_channels"] and shape[1] != channels:
            raise ExerciseError(where + "that is the image's channels; the latent has the VAE's latent_channels")
        if shape[:2] == (batch, channels) and shape[2] == 2 * rows:
            raise ExerciseError(where + "one halving too few: the last down block keeps the size",
                                formula="factor = 2 ** (len(block_out_channels) - 1)")
        if shape[:2] == (batch, channels) and shape[2] * 2 == rows:
            raise ExerciseError(where + "one halving too many: the last down block keeps the size",
                                formula="factor = 2 ** (len(block_out_channels) - 1)")
        raise ExerciseError(where + f"expected a latent {factor}x smaller per side than the image. Each down block of the "
                            "encoder but the last halves the sides: count them in block_out_channels",
                            formula="(1, latent_channels, height // f, width // f) with f = 2 ** (len(block_out_channels) - 1)")
