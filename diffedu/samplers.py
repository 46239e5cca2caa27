"""The reverse process (chapter 02): the DDPM and DDIM steps, and the loops that chain them.

Notation (chapter 00's table). k is the code timestep, 0..T-1, an index into the schedule's
arrays; the paper's t is k + 1 (see schedules.py). In the formulas below subscripts are code
indices, alpha_bar_{-1} = 1 (clean data), and x_t names the noisy sample whatever its step:

    x_t          noisy sample at code timestep k                  (B, ...)
    eps          the noise a model predicts, eps_theta(x_t, k)    (B, ...)
    pred_x0      the model's estimate of x_0                      eq. (2.4)
    k_next       the code timestep the step moves to: k - 1 for DDPM, any k' < k for DDIM, -1 for clean data

A "model" here is any callable `model(x_t, k) -> eps` with k a long tensor of shape (B,).

    ddim_step / ddpm_step              one step, one equation (2.7) / (2.6)
    ddim_states / ddpm_states          the loop: yield one step after another from x_T
    ddim_sample / ddpm_sample          one batch from noise to data, with capture and a progress bar

The front door for drawing images from a trained model, batching, guidance and all, is
`diffedu.generate.generate`; it uses the loops above.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from diffedu.course.checks import broadcast_to_batch, check_same_shape, check_timesteps
from diffedu.course.device import randn
from diffedu.course.trajectory import SampleOutput, run_steps
from diffedu.schedules import NoiseSchedule

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Which timesteps an N-step run visits (see `ddim_timesteps`), for every sampler in the course.
DEFAULT_SPACING = "trailing"


@dataclass
class StepOutput:
    """One reverse step: prev_sample is x at the next time (diffusers' name), pred_x0 the estimate of
    x_0 made where the step started, at `time` (a code timestep k, or a flow time t in chapter 08)."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor
    time: int | float | None = None


def alpha_bar_at(schedule: NoiseSchedule, k: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t broadcast against x, with alpha_bar_{-1} = 1 (k = -1 means "clean")."""
    alpha_bar = schedule.alpha_bar.to(x.device)[k.clamp(min=0).to(x.device)]
    alpha_bar = torch.where(k.to(x.device) < 0, torch.ones_like(alpha_bar), alpha_bar)
    return broadcast_to_batch(alpha_bar, x)


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """pred_x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar), eq. (2.4): eq. (1.5) solved for x_0.
    alpha_bar is broadcast against x_t (see `alpha_bar_at`)."""
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar): eq. (2.4) solved for eps, the noise that
    points from an estimate x0 to x_t. alpha_bar is broadcast against x_t."""
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def predict_x0_from_eps(x_t: torch.Tensor, k: torch.Tensor | int, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """Eq. (2.4) at code timestep k (a number, or one per sample (B,)) of `schedule`."""
    check_same_shape("x_t", x_t, "eps", eps)
    k = check_timesteps(k, schedule.num_train_timesteps, batch_size=x_t.shape[0])
    return x0_from_eps(x_t, eps, alpha_bar_at(schedule, k, x_t))


def clipped_prediction(x_t: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor,
                       clip_x0: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred_x0, eps): pred_x0 by eq. (2.4); with clip_x0, pred_x0 clamped to +-clip_x0 and eps
    recomputed from it with eq. (2.4), so that both point at the clipped x_0 (diffusers:
    use_clipped_model_output=True). Keeping the raw eps would pull DDIM samples off the data
    range, badly so with guidance. alpha_bar is broadcast against x_t."""
    pred_x0 = x0_from_eps(x_t, eps, alpha_bar)
    if clip_x0 is not None:
        pred_x0 = pred_x0.clamp(-clip_x0, clip_x0)
        eps = eps_from_x0(x_t, pred_x0, alpha_bar)
    return pred_x0, eps


def posterior_at(x0: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor, schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{k-1} | x_t, x_0), eqs. (2.2)-(2.3), for valid code timesteps k (B,)
    (see `q_posterior`); the three constants are precomputed in float64 by the schedule."""
    k = k.to(x_t.device)
    coef_x0 = broadcast_to_batch(schedule.posterior_coef_x0.to(x_t.device)[k], x_t)
    coef_xt = broadcast_to_batch(schedule.posterior_coef_xt.to(x_t.device)[k], x_t)
    variance = broadcast_to_batch(schedule.posterior_variance.to(x_t.device)[k], x_t)
    return coef_x0 * x0 + coef_xt * x_t, variance


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, k: torch.Tensor | int, schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{k-1} | x_t, x_0), eqs. (2.1)-(2.3):

        mean     = sqrt(alpha_bar_{k-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{k-1}) / (1 - alpha_bar_t) x_t
        variance = (1 - alpha_bar_{k-1}) / (1 - alpha_bar_t) beta_t        (beta_tilde_t)

    Returns:
        (mean, variance): mean has x_t's shape; variance is (B, 1, ...), 0 at k = 0.
    """
    check_same_shape("x0", x0, "x_t", x_t)
    k = check_timesteps(k, schedule.num_train_timesteps, batch_size=x_t.shape[0])
    return posterior_at(x0, x_t, k, schedule)


def step_time(k: int, schedule: NoiseSchedule, x_t: torch.Tensor) -> torch.Tensor:
    """A step's code timestep k as one long per sample (B,), after checking it is in [0, T-1]."""
    return check_timesteps(torch.full((x_t.shape[0],), int(k)), schedule.num_train_timesteps)


def ddpm_step(x_t: torch.Tensor, k: int, eps: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor | None = None,
              variance: str = "small", clip_x0: float | None = None) -> StepOutput:
    """One DDPM reverse step x_t -> x_{k-1} (Ho et al. 2020, Algorithm 2), eq. (2.6).

    The mean is the posterior mean (2.2) with x_0 replaced by pred_x0 (2.4); without
    clipping that is exactly the epsilon form (2.5):
        mean = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps).

    Args:
        x_t, eps: (B, ...) current sample and its predicted noise eps_theta(x_t, k).
        k: current timestep, an int in [0, T-1].
        noise: z ~ N(0, I), shape of x_t; required for k > 0 (use `diffedu.course.device.randn`).
        variance: "small" for sigma_t^2 = beta_tilde_t (2.3), "large" for sigma_t^2 = beta_t
            (both in the paper; diffusers' fixed_small and fixed_large).
        clip_x0: clamp pred_x0 to [-clip_x0, clip_x0] (data range), e.g. 1.0 for images.
    """
    check_same_shape("x_t", x_t, "eps", eps)
    k_batch = step_time(k, schedule, x_t)
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' (beta_tilde) or 'large' (beta), got {variance!r}")
    if k > 0 and (noise is None or noise.shape != x_t.shape):
        raise ValueError("ddpm_step needs `noise` (z ~ N(0, I), x_t's shape) for k > 0")

    # 1. estimate x_0 from the predicted noise, eq. (2.4)
    pred_x0 = x0_from_eps(x_t, eps, alpha_bar_at(schedule, k_batch, x_t))
    if clip_x0 is not None:
        pred_x0 = pred_x0.clamp(-clip_x0, clip_x0)
    # 2. mean of q(x_{k-1} | x_t, pred_x0), eq. (2.2)
    mean, beta_tilde = posterior_at(pred_x0, x_t, k_batch, schedule)
    if k == 0:
        return StepOutput(mean, pred_x0, k)  # no noise on the last step
    # 3. add noise with the chosen variance, eq. (2.6)
    if variance == "small":
        sigma_sq = beta_tilde.clamp(min=1e-20)
    else:
        sigma_sq = broadcast_to_batch(schedule.betas.to(x_t.device)[k_batch.to(x_t.device)], x_t)
    return StepOutput(mean + sigma_sq.sqrt() * noise, pred_x0, k)


def ddim_step(x_t: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule: NoiseSchedule, eta: float = 0.0,
              noise: torch.Tensor | None = None, clip_x0: float | None = None) -> StepOutput:
    """One DDIM step from code timestep k to k' = k_next (Song et al. 2021, eq. 12), eqs. (2.7)-(2.8):

        x_{k'} = sqrt(alpha_bar_{k'}) pred_x0 + sqrt(1 - alpha_bar_{k'} - sigma^2) eps + sigma z
        sigma  = eta sqrt((1 - alpha_bar_{k'}) / (1 - alpha_bar_k)) sqrt(1 - alpha_bar_k / alpha_bar_{k'})

    eta = 0 is deterministic (DDIM); eta = 1 with k' = k - 1 is DDPM with sigma^2 = beta_tilde.

    Args:
        x_t, eps: (B, ...) current sample and its predicted noise.
        k: current timestep in [0, T-1]; k_next < k the one to jump to, -1 for clean data (alpha_bar = 1).
        eta: 0 (deterministic) to 1 (as noisy as DDPM).
        noise: z ~ N(0, I), needed when eta > 0 and k_next >= 0.
        clip_x0: clamp pred_x0 to [-clip_x0, clip_x0], and recompute eps from the clipped
            pred_x0 with eq. (2.4) so that both terms of (2.7) agree.
    """
    check_same_shape("x_t", x_t, "eps", eps)
    k_batch = step_time(k, schedule, x_t)
    if not -1 <= k_next < k:
        raise ValueError(f"k_next must satisfy -1 <= k_next < k = {k}, got {k_next}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = DDIM, 1 = DDPM-like), got {eta}")
    adds_noise = eta > 0 and k_next >= 0
    if adds_noise and (noise is None or noise.shape != x_t.shape):
        raise ValueError("ddim_step needs `noise` (z ~ N(0, I), x_t's shape) when eta > 0")

    alpha_bar = alpha_bar_at(schedule, k_batch, x_t)
    alpha_bar_next = alpha_bar_at(schedule, torch.full_like(k_batch, k_next), x_t)
    # 1. estimate x_0, eq. (2.4), clipped if asked, with the eps that matches it
    pred_x0, eps = clipped_prediction(x_t, alpha_bar, eps, clip_x0)
    # 2. the noise level of the jump, eq. (2.8)
    noise_std = eta * ((1 - alpha_bar_next) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_next)).sqrt()  # sigma_t of (2.8)
    # 3. point towards x_t ("direction"), then move, eq. (2.7)
    direction = (1 - alpha_bar_next - noise_std**2).clamp(min=0).sqrt() * eps
    x_next = alpha_bar_next.sqrt() * pred_x0 + direction
    if adds_noise:
        x_next = x_next + noise_std * noise
    return StepOutput(x_next, pred_x0, k)


def ddim_timesteps(num_train_timesteps: int, steps: int, spacing: str = DEFAULT_SPACING) -> list[int]:
    """The decreasing timesteps an N-step run visits (the same as diffusers' timestep_spacing).

    "trailing": T-1, T-1-s, ... (stride s) so the first step starts at the noisiest k, where x_T ~ N(0, I)
                is true (Lin et al. 2024); the course's default (DEFAULT_SPACING).
    "leading":  ..., 2s, s, 0 with stride s = T // steps (the DDIM paper's, diffusers' default).
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    if spacing == "leading":
        stride = num_train_timesteps // steps
        return [i * stride for i in reversed(range(steps))]
    if spacing == "trailing":
        stride = num_train_timesteps / steps
        return [round(num_train_timesteps - i * stride) - 1 for i in range(steps)]
    raise ValueError(f"spacing must be 'leading' or 'trailing', got {spacing!r}")


def predict(model, x: torch.Tensor, time_input: torch.Tensor, **inputs) -> torch.Tensor:
    """model(x, time_input) in float32, checked to have x's shape: the one place the samplers call a
    model. time_input is what the network takes: code timesteps (B,) for a noise predictor, flow
    times * TIME_SCALE for a velocity model (chapter 08); inputs: any further ones (MeanFlow's interval)."""
    prediction = model(x, time_input, **inputs)
    if prediction.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(prediction.shape)} for input {tuple(x.shape)}: "
                         "it must predict a tensor of the input's shape (the noise, or a velocity)")
    return prediction.float()


def predict_noise(model: NoisePredictor, x: torch.Tensor, k: int) -> torch.Tensor:
    """eps_theta(x, k) for a whole batch at one code timestep k."""
    return predict(model, x, torch.full((x.shape[0],), k, device=x.device, dtype=torch.long))


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None, device, x_init: torch.Tensor | None) -> torch.Tensor:
    """x_T: the given x_init (checked against `shape`), or fresh N(0, I) noise from the generator."""
    if x_init is None:
        return randn(shape, generator, device)
    if tuple(x_init.shape) != tuple(shape):
        raise ValueError(f"x_init must have shape {tuple(shape)}, got {tuple(x_init.shape)}")
    return x_init.to(device)


def next_times(timesteps: list[int]) -> list[tuple[int, int]]:
    """(k, k_next) for each step of a run: k_next is the following timestep, -1 (clean data) after the last."""
    return list(zip(timesteps, timesteps[1:] + [-1]))


def ddpm_states(model: NoisePredictor, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int] | None = None,
                generator: torch.Generator | None = None, clip_x0: float | None = None,
                variance: str = "small") -> Iterator[StepOutput]:
    """DDPM from x = x_T through every timestep T-1, ..., 0 with eq. (2.6) (Ho et al. 2020, Algorithm 2),
    one step at a time. timesteps: None, or that same full list (DDPM steps from k to k - 1)."""
    all_steps = list(reversed(range(schedule.num_train_timesteps)))
    if timesteps is not None and list(timesteps) != all_steps:
        raise ValueError("DDPM steps through every timestep T-1, ..., 0; for fewer, strided steps use ddim_states "
                         "with eta = 1 (ancestral sampling)")
    for k in all_steps:
        eps = predict_noise(model, x, k)
        noise = randn(x.shape, generator, x.device) if k > 0 else None
        step = ddpm_step(x, k, eps, schedule, noise, variance, clip_x0)
        yield step
        x = step.prev_sample


def ddim_states(model: NoisePredictor, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int], eta: float = 0.0,
                generator: torch.Generator | None = None, clip_x0: float | None = None) -> Iterator[StepOutput]:
    """DDIM from x = x_T over `timesteps` (decreasing, see `ddim_timesteps`), eq. (2.7), one step at a time."""
    for k, k_next in next_times(timesteps):
        eps = predict_noise(model, x, k)
        noise = randn(x.shape, generator, x.device) if eta > 0 and k_next >= 0 else None
        step = ddim_step(x, k, k_next, eps, schedule, eta, noise, clip_x0)
        yield step
        x = step.prev_sample


@torch.no_grad()
def ddpm_sample(model: NoisePredictor, shape: tuple[int, ...], schedule: NoiseSchedule, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", variance: str = "small", clip_x0: float | None = None,
                capture_every: int | None = None, progress: bool = True, x_init: torch.Tensor | None = None) -> SampleOutput:
    """One batch of `shape` (B, ...) with all T DDPM steps, eq. (2.6), from x_T drawn from the CPU
    `generator` (or x_init); capture_every and progress as in `course.trajectory.run_steps`."""
    schedule = schedule.to(device)
    x = initial_noise(shape, generator, device, x_init)  # x_T ~ N(0, I)
    steps = ddpm_states(model, x, schedule, None, generator, clip_x0, variance)
    return run_steps(x, steps, schedule.num_train_timesteps, capture_every=capture_every, progress=progress, desc="DDPM")


@torch.no_grad()
def ddim_sample(model: NoisePredictor, shape: tuple[int, ...], schedule: NoiseSchedule, steps: int = 50, eta: float = 0.0,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu", spacing: str = DEFAULT_SPACING,
                clip_x0: float | None = None, capture_every: int | None = None, progress: bool = True,
                x_init: torch.Tensor | None = None) -> SampleOutput:
    """One batch of `shape` (B, ...) with `steps` DDIM steps (Song et al. 2021), eq. (2.7).

    Args: as `ddpm_sample`, plus
        steps: how many model evaluations (1..T).
        eta: 0 for deterministic DDIM, up to 1 (ancestral sampling on the strided timesteps).
        spacing: "trailing" or "leading" (see `ddim_timesteps`).
    """
    schedule = schedule.to(device)
    x = initial_noise(shape, generator, device, x_init)  # x_T ~ N(0, I)
    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps, spacing)
    states = ddim_states(model, x, schedule, timesteps, eta, generator, clip_x0)
    return run_steps(x, states, len(timesteps), capture_every=capture_every, progress=progress, desc=f"DDIM {steps}")
