"""The training objective: predict the noise (Ho et al. 2020, Algorithm 1), eq. (2.9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffedu.device import randn
from diffedu.samplers import NoisePredictor
from diffedu.schedules import NoiseSchedule, q_sample


def noise_prediction_loss(
    model: NoisePredictor,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_simple = E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2.

    One Monte-Carlo estimate: t ~ Uniform{0..T-1} and eps ~ N(0, I) per sample, both drawn
    from the CPU `generator`.

    Args:
        model: eps_theta(x_t, t).
        x0: a batch of clean data (B, ...), on the model's device.
        schedule: the noise schedule.
    Returns:
        the mean squared error, a scalar tensor.
    """
    t = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=generator).to(x0.device)  # (B,)
    noise = randn(x0.shape, generator, x0.device)  # eps ~ N(0, I)
    x_t = q_sample(x0, t, noise, schedule)
    return F.mse_loss(model(x_t, t), noise)
