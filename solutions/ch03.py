"""Reference solutions of chapter 03's exercises (try first!). Checked by tests/test_exercises_ch03.py."""

import torch
import torch.nn.functional as F

from diffedu.samplers import predict_x0_from_eps
from diffedu.schedules import q_sample


def solution_shift_embedding(emb: torch.Tensor, delta: int) -> torch.Tensor:
    half = emb.shape[1] // 2
    freqs = 10_000.0 ** (-torch.arange(half) / half)  # (half,) w_i of eq. (3.1)
    sin_k, cos_k = emb[:, :half], emb[:, half:]  # sin(k w_i), cos(k w_i), each (B, half)
    sin_d, cos_d = torch.sin(delta * freqs), torch.cos(delta * freqs)  # the turn by delta w_i, each (half,)
    # sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b - sin a sin b
    return torch.cat([sin_k * cos_d + cos_k * sin_d, cos_k * cos_d - sin_k * sin_d], dim=1)  # (B, dim)


def solution_negative_guided_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, eps_negative: torch.Tensor,
                                 w: float, v: float) -> torch.Tensor:
    # gradient of log[q_t(x) q_t(y|x)^w q_t(y'|x)^(-v)], each classifier by Bayes' rule, times -sqrt(1 - alpha_bar_t)
    return eps_uncond + w * (eps_cond - eps_uncond) - v * (eps_negative - eps_uncond)


def solution_x0_errors(model, schedule, images: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """MSE of the guess x0_hat (2.4) at t = 100, 300, 500, 700, 900 (code k = t - 1)."""
    generator = torch.Generator().manual_seed(seed)
    errors = {}
    for t in (100, 300, 500, 700, 900):
        k = torch.full((images.shape[0],), t - 1)  # (N,) code timesteps
        noise = torch.randn(images.shape, generator=generator)  # eps ~ N(0, I)
        x_t = q_sample(images, k, noise, schedule)  # (1.5)
        with torch.no_grad():
            x0_hat = predict_x0_from_eps(x_t, k, model(x_t, k, labels), schedule)  # (2.4), not clipped
        errors[t] = F.mse_loss(x0_hat, images).item()
    return errors  # grows with t: (3.4), the noise error divided by SNR(t)


SOLUTION_3_4 = 64 * 128 * 3 * 3 + 128  # weights in x out x kernel positions, plus one bias per output channel
