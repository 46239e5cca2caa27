"""Reference solutions of chapter 05's exercises (try first!). Checked by tests/test_exercises_ch05.py."""

import torch


def solution_guided_noise(eps_empty: torch.Tensor, eps_text: torch.Tensor, w: float) -> torch.Tensor:
    return eps_empty + w * (eps_text - eps_empty)  # eq. (5.2)


SOLUTION_5_2 = (1, 4, 768 // 8, 512 // 8)  # 4 latent channels, each side 8x smaller
SOLUTION_5_3 = int(50 * 0.6)  # get_timesteps keeps the last int(num_inference_steps * strength) timesteps
