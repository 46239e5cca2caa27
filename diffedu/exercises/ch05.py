"""Exercises of chapter 05 (Stable Diffusion through Diffusers). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor, require_answer


@exercise("5.1")
def check_guided_noise(guided_noise) -> None:
    """Exercise 5.1: classifier-free guidance with the empty prompt, eq. (5.2)."""
    gen = torch.Generator().manual_seed(5)
    eps_empty, eps_text = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    result = expect_tensor(guided_noise(eps_empty.clone(), eps_text.clone(), 7.5), (2, 4, 8, 8), "the guided noise")
    if torch.allclose(result, eps_text + 7.5 * (eps_text - eps_empty), atol=1e-5):
        raise ExerciseError("start from the empty-prompt prediction: eps_empty + w (eps_text - eps_empty)")
    if torch.allclose(result, eps_empty + 7.5 * (eps_empty - eps_text), atol=1e-5):
        raise ExerciseError("the direction points from the empty prompt towards the text: (eps_text - eps_empty)")
    if torch.allclose(result, 7.5 * eps_text, atol=1e-5):
        raise ExerciseError("scaling the text prediction is not guidance; (5.2) extrapolates away from the empty prompt")
    expect_close(result, eps_empty + 7.5 * (eps_text - eps_empty), "eps_empty + w * (eps_text - eps_empty)")
    if not torch.allclose(guided_noise(eps_empty, eps_text, 1.0), eps_text, atol=1e-5):
        raise ExerciseError("with w = 1 guidance must give the plain text-conditioned prediction eps_text")


@exercise("5.2")
def check_latent_shape(answer) -> None:
    """Exercise 5.2: SD v1.5's latent for a 768 x 512 image."""
    require_answer(answer)
    try:
        shape = tuple(int(x) for x in answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"answer with a tuple of four whole numbers, like (1, C, H, W); got {answer!r}") from None
    if shape == (1, 4, 64, 96):
        raise ExerciseError("height comes first: 768 / 8 rows, 512 / 8 columns")
    if shape in ((1, 3, 96, 64), (1, 4, 768, 512)):
        raise ExerciseError("the latent has the VAE's 4 channels and sides 8x smaller than the image")
    if shape != (1, 4, 96, 64):
        raise ExerciseError("divide each side by the VAE's factor 8 and use its 4 latent channels: (1, 4, H / 8, W / 8)")


@exercise("5.3")
def check_img2img_steps(answer) -> None:
    """Exercise 5.3: UNet calls of image-to-image with 50 steps and strength 0.6."""
    require_answer(answer)
    try:
        steps = int(answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"answer with a whole number, got {answer!r}") from None
    if steps == 20:
        raise ExerciseError("strength is the share of the steps that run, counted from the noisy end: 0.6 of 50")
    if steps in (60, 100):
        raise ExerciseError("with guidance the conditional and empty-prompt halves run as one batch: count one call per step")
    if steps == 50:
        raise ExerciseError("image-to-image skips the noisiest steps: it starts from the noised input, not from pure noise")
    if steps != 30:
        raise ExerciseError("get_timesteps keeps the last int(num_inference_steps * strength) timesteps")


# Reference solutions (try first!)


def solution_guided_noise(eps_empty: torch.Tensor, eps_text: torch.Tensor, w: float) -> torch.Tensor:
    return eps_empty + w * (eps_text - eps_empty)


SOLUTION_5_2 = (1, 4, 768 // 8, 512 // 8)
SOLUTION_5_3 = int(50 * 0.6)
