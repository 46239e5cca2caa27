"""Reference solutions of chapter 05's exercises (try first!). Checked by tests/test_exercises_ch05.py."""

import torch


def solution_img2img_start(clean_latents: torch.Tensor, noise: torch.Tensor, strength: float, scheduler,
                           num_inference_steps: int) -> torch.Tensor:
    scheduler.set_timesteps(num_inference_steps)
    runs = int(num_inference_steps * strength)  # the steps that run: the last ones
    k = scheduler.timesteps[num_inference_steps - runs]  # the first of them, a code timestep
    alpha_bar = scheduler.alphas_cumprod[k]
    return alpha_bar.sqrt() * clean_latents + (1 - alpha_bar).sqrt() * noise  # eq. (1.5), noised to k


# Exercise 5.2: at w = 1 the negative prompt cancels from (5.2), and Diffusers skips it: the images are identical.
SOLUTION_5_2 = 0.0


def solution_latent_shape(vae_config: dict, height: int, width: int) -> tuple[int, int, int, int]:
    halvings = len(vae_config["block_out_channels"]) - 1  # every down block but the last halves the sides
    return (1, vae_config["latent_channels"], height // 2**halvings, width // 2**halvings)
