"""Noise schedules and the forward process q(x_t | x_0) (chapter 01).

Timesteps. The chapters write equations with the papers' numbering t = 1..T (x_0 is clean
data, alpha_bar_0 = 1). Arrays here are 0-indexed, as in diffusers: the code timestep
k = t - 1. In this file's docstrings subscripts are code indices (alpha_bar_k = alpha_bar[k],
the paper's alpha_bar_{k+1}), and index -1 means clean data (alpha_bar = 1).

    betas[k]      beta          variance of the noise added by step k          eq. (1.1)
    alphas[k]     alpha         1 - beta: the fraction of the variance kept
    alpha_bar[k]  alpha_bar     product of alphas[0..k]                        eq. (1.4)
    snr[k]        SNR           alpha_bar / (1 - alpha_bar)                    eq. (1.6)

and, for the reverse process of chapter 02, the constants of q(x_{t-1} | x_t, x_0):

    posterior_coef_x0[t], posterior_coef_xt[t]    the mean's weights      eq. (2.2)
    posterior_variance[t]                          beta_tilde_t            eq. (2.3)

Everything is computed in float64 and stored in float32: float32 cumulative products lose
digits over 1,000 steps, and 1 - alpha_bar_t near t = 0 has only a few correct digits when
it is computed from a float32 alpha_bar_t = 0.9999.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from diffedu.course.checks import broadcast_to_batch, check_finite, check_same_shape, check_tensor, check_timesteps

SCHEDULE_NAMES = ("linear", "cosine")


def linear_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """betas evenly spaced from beta_start to beta_end (Ho et al. 2020, section 4), the
    variances of eq. (1.1). float64."""
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start} and {beta_end}")
    # Ho et al. chose their betas for T = 1000; scaling by 1000 / T keeps the same total
    # noise for other T (as in improved DDPM). For T = 1000 the scale is 1.
    scale = 1000 / num_train_timesteps
    return torch.linspace(beta_start * scale, beta_end * scale, num_train_timesteps, dtype=torch.float64)


def cosine_alpha_bar(t_fraction: torch.Tensor, offset: float = 0.008) -> torch.Tensor:
    """f(t) = cos^2(((t/T + s) / (1 + s)) * pi/2) with s = offset, the cosine schedule's
    alpha_bar before normalisation, eq. (1.7) (Nichol & Dhariwal 2021, eq. 17)."""
    return torch.cos((t_fraction + offset) / (1 + offset) * math.pi / 2) ** 2


def cosine_betas(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} for the cosine alpha_bar_t = f(t) / f(0) of
    eq. (1.7), clipped at max_beta to avoid a singularity at the end (Nichol & Dhariwal
    2021, section 3.2). float64."""
    steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = cosine_alpha_bar(steps)
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """The per-step constants of a diffusion process, each a float32 tensor of shape (T,).

    Build one with `make_schedule` or `schedule_from_betas`.
    """

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    posterior_coef_x0: torch.Tensor
    posterior_coef_xt: torch.Tensor
    posterior_variance: torch.Tensor

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0]

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t), eq. (1.6)."""
        alpha_bar = self.alpha_bar.double()
        return (alpha_bar / (1 - alpha_bar)).float()

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "NoiseSchedule":
        """A copy with every tensor on `device` (and in `dtype`, e.g. float64 for tests)."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}
        return NoiseSchedule(self.name, **{k: v.to(device=device, dtype=dtype) for k, v in tensors.items()})

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule({self.name!r}, T={self.num_train_timesteps}, beta {self.betas[0]:.2e}..{self.betas[-1]:.2e}, "
            f"alpha_bar {self.alpha_bar[0]:.4f}..{self.alpha_bar[-1]:.2e})"
        )


def schedule_from_betas(betas: torch.Tensor, name: str = "custom") -> NoiseSchedule:
    """Build alphas and alpha_bar (eq. 1.4) from betas, in float64, stored as float32."""
    check_finite("betas", check_tensor("betas", betas))
    if betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor (T,), got shape {tuple(betas.shape)}")
    if not ((betas > 0) & (betas < 1)).all():
        raise ValueError("every beta_t must lie in (0, 1): it is the variance of the noise added at step t")
    betas = betas.double()
    alphas = 1 - betas
    alpha_bar = torch.cumprod(alphas, dim=0)  # eq. (1.4)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])  # alpha_bar_{-1} = 1
    posterior_coef_x0 = alpha_bar_prev.sqrt() * betas / (1 - alpha_bar)  # eq. (2.2)
    posterior_coef_xt = alphas.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)  # eq. (2.2)
    posterior_variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * betas  # eq. (2.3)
    return NoiseSchedule(
        name,
        *(x.float() for x in (betas, alphas, alpha_bar, posterior_coef_x0, posterior_coef_xt, posterior_variance)),
    )


def make_schedule(name: str = "linear", num_train_timesteps: int = 1000) -> NoiseSchedule:
    """The "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021) noise schedule.

    Args:
        name: "linear" or "cosine".
        num_train_timesteps: T, the number of diffusion steps (default 1000).
    """
    if not isinstance(num_train_timesteps, int) or num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be a positive int, got {num_train_timesteps!r}")
    if name == "linear":
        return schedule_from_betas(linear_betas(num_train_timesteps), "linear")
    if name == "cosine":
        return schedule_from_betas(cosine_betas(num_train_timesteps), "cosine")
    raise ValueError(f"unknown schedule {name!r}: choose one of {', '.join(SCHEDULE_NAMES)}")


def q_sample(x0: torch.Tensor, k: torch.Tensor | int, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one step, eq. (1.5):

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)

    Args:
        x0: clean data, shape (B, ...), e.g. (B, 1, 28, 28) in [-1, 1].
        k: code timesteps in [0, T-1], an int or shape (B,): the paper's t = k + 1.
        noise: eps, the same shape as x0.
        schedule: the noise schedule.
    Returns:
        x_t, the same shape as x0.
    """
    check_finite("x0", check_tensor("x0", x0))
    check_same_shape("x0", x0, "noise", check_tensor("noise", noise))
    k = check_timesteps(k, schedule.num_train_timesteps, batch_size=x0.shape[0] if x0.ndim else None)
    alpha_bar = schedule.alpha_bar.to(x0.device)[k.to(x0.device)]
    alpha_bar = broadcast_to_batch(alpha_bar, x0)  # (B, 1, 1, 1)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
