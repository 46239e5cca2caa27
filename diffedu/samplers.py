"""The reverse process: DDPM and DDIM steps and sampling loops (chapter 02).

Notation (chapter 02). Here t is the code timestep, 0..T-1 (the paper's t + 1; see
schedules.py), subscripts are code indices, and alpha_bar_{-1} = 1 (clean data):

    x_t          noisy sample at step t                           (B, ...)
    eps          the noise a model predicts, eps_theta(x_t, t)    (B, ...)
    pred_x0      the model's estimate of x_0                      eq. (2.4)
    t_prev       the step we move to: t - 1 for DDPM, any t' < t for DDIM

A "model" here is any callable `model(x_t, t) -> eps` with t a long tensor of shape (B,).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffedu.progress import tqdm

from diffedu.checks import broadcast_to_batch, check_finite, check_same_shape, check_timesteps
from diffedu.device import autocast, randn
from diffedu.schedules import NoiseSchedule

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class StepOutput:
    """One reverse step: the sample at t_prev and the model's estimate of x_0."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


@dataclass
class SampleOutput:
    """A finished sampling run; the trajectory lists hold CPU copies when captured."""

    samples: torch.Tensor
    timesteps: list[int] = field(default_factory=list)
    trajectory: list[torch.Tensor] = field(default_factory=list)
    pred_x0_trajectory: list[torch.Tensor] = field(default_factory=list)


def _alpha_bar_at(schedule: NoiseSchedule, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t broadcast against x, with alpha_bar_{-1} = 1 (t = -1 means "clean")."""
    alpha_bar = schedule.alpha_bar.to(x.device)[t.clamp(min=0).to(x.device)]
    alpha_bar = torch.where(t.to(x.device) < 0, torch.ones_like(alpha_bar), alpha_bar)
    return broadcast_to_batch(alpha_bar, x)


def predict_x0_from_eps(x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), eq. (2.4):
    eq. (1.5) solved for x_0."""
    check_same_shape("x_t", x_t, "eps", eps)
    t = check_timesteps(t, schedule.num_steps, batch_size=x_t.shape[0])
    alpha_bar = _alpha_bar_at(schedule, t, x_t)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def clipped_prediction(x_t: torch.Tensor, alpha_bar: torch.Tensor, eps: torch.Tensor,
                       clip_x0: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred_x0, eps): pred_x0 by eq. (2.4); with clip_x0, pred_x0 clamped to +-clip_x0 and eps
    recomputed from it with eq. (2.4), so that both point at the clipped x_0 (diffusers:
    use_clipped_model_output=True). Keeping the raw eps would pull DDIM samples off the data
    range, badly so with guidance. alpha_bar is broadcast against x_t."""
    pred_x0 = (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    if clip_x0 is not None:
        pred_x0 = pred_x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - alpha_bar.sqrt() * pred_x0) / (1 - alpha_bar).sqrt()
    return pred_x0, eps


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0), eqs. (2.1)-(2.3):

        mean     = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        variance = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t        (beta_tilde_t)

    Returns:
        (mean, variance): mean has x_t's shape; variance is (B, 1, ...), 0 at t = 0.
    """
    check_same_shape("x0", x0, "x_t", x_t)
    t = check_timesteps(t, schedule.num_steps, batch_size=x_t.shape[0]).to(x_t.device)
    # the three constants are precomputed in float64 by the schedule (see schedules.py)
    coef_x0 = broadcast_to_batch(schedule.posterior_coef_x0.to(x_t.device)[t], x_t)
    coef_xt = broadcast_to_batch(schedule.posterior_coef_xt.to(x_t.device)[t], x_t)
    variance = broadcast_to_batch(schedule.posterior_variance.to(x_t.device)[t], x_t)
    return coef_x0 * x0 + coef_xt * x_t, variance


def ddpm_step(
    x_t: torch.Tensor,
    t: int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    variance: str = "small",
    clip_x0: float | None = None,
) -> StepOutput:
    """One DDPM reverse step x_t -> x_{t-1} (Ho et al. 2020, Algorithm 2), eq. (2.6).

    The mean is the posterior mean (2.2) with x_0 replaced by pred_x0 (2.4); without
    clipping that is exactly the epsilon form (2.5):
        mean = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps).

    Args:
        x_t: (B, ...) current sample.
        t: current timestep, an int in [0, T-1].
        eps: (B, ...) predicted noise eps_theta(x_t, t).
        schedule: the noise schedule the model was trained with.
        noise: z ~ N(0, I), shape of x_t; required for t > 0 (use `diffedu.device.randn`).
        variance: "small" for sigma_t^2 = beta_tilde_t (2.3), "large" for sigma_t^2 = beta_t.
            Both are in the paper; diffusers calls them fixed_small and fixed_large.
        clip_x0: clamp pred_x0 to [-clip_x0, clip_x0] (data range), e.g. 1.0 for images.
    """
    check_finite("x_t", x_t)
    check_finite("eps", eps)
    t_tensor = check_timesteps(torch.full((x_t.shape[0],), int(t)), schedule.num_steps)
    if variance not in ("small", "large"):
        raise ValueError(f"variance must be 'small' (beta_tilde) or 'large' (beta), got {variance!r}")

    # 1. estimate x_0 from the predicted noise, eq. (2.4)
    pred_x0 = predict_x0_from_eps(x_t, t_tensor, eps, schedule)
    if clip_x0 is not None:
        pred_x0 = pred_x0.clamp(-clip_x0, clip_x0)
    # 2. mean of q(x_{t-1} | x_t, pred_x0), eq. (2.2)
    mean, posterior_variance = q_posterior(pred_x0, x_t, t_tensor, schedule)
    if t == 0:
        return StepOutput(prev_sample=mean, pred_x0=pred_x0)  # no noise on the last step
    # 3. add noise with the chosen variance, eq. (2.6)
    if noise is None:
        raise ValueError("ddpm_step needs `noise` (z ~ N(0, I), x_t's shape) for t > 0")
    check_same_shape("x_t", x_t, "noise", noise)
    if variance == "small":
        sigma_sq = posterior_variance.clamp(min=1e-20)
    else:
        sigma_sq = broadcast_to_batch(schedule.betas.to(x_t.device)[t_tensor.to(x_t.device)], x_t)
    return StepOutput(prev_sample=mean + sigma_sq.sqrt() * noise, pred_x0=pred_x0)


def ddim_step(
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_x0: float | None = None,
) -> StepOutput:
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12), eqs. (2.7)-(2.8):

        x_{t'} = sqrt(alpha_bar_{t'}) pred_x0 + sqrt(1 - alpha_bar_{t'} - sigma^2) eps + sigma z
        sigma  = eta sqrt((1 - alpha_bar_{t'}) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_{t'})

    eta = 0 is deterministic (DDIM); eta = 1 with t' = t - 1 is DDPM with sigma^2 = beta_tilde.

    Args:
        x_t: (B, ...) current sample.
        t: current timestep in [0, T-1].
        t_prev: the timestep to jump to, t_prev < t; -1 means "to clean data" (alpha_bar = 1).
        eps: (B, ...) predicted noise.
        schedule: the noise schedule the model was trained with.
        eta: 0 (deterministic) to 1 (as noisy as DDPM).
        noise: z ~ N(0, I), needed when eta > 0 and t_prev >= 0.
        clip_x0: clamp pred_x0 to [-clip_x0, clip_x0], and recompute eps from the clipped
            pred_x0 with eq. (2.4) so that both terms of (2.7) agree.
    """
    check_finite("x_t", x_t)
    check_finite("eps", eps)
    t_tensor = check_timesteps(torch.full((x_t.shape[0],), int(t)), schedule.num_steps)
    if not -1 <= t_prev < t:
        raise ValueError(f"t_prev must satisfy -1 <= t_prev < t = {t}, got {t_prev}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = DDIM, 1 = DDPM-like), got {eta}")

    alpha_bar = _alpha_bar_at(schedule, t_tensor, x_t)
    alpha_bar_prev = _alpha_bar_at(schedule, torch.full_like(t_tensor, t_prev), x_t)
    # 1. estimate x_0, eq. (2.4), clipped if asked, with the eps that matches it
    pred_x0, eps = clipped_prediction(x_t, alpha_bar, eps, clip_x0)
    # 2. the noise level of the jump, eq. (2.8)
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
    # 3. point towards x_t ("direction"), then move, eq. (2.7)
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
    prev_sample = alpha_bar_prev.sqrt() * pred_x0 + direction
    if eta > 0 and t_prev >= 0:
        if noise is None:
            raise ValueError("ddim_step needs `noise` (z ~ N(0, I), x_t's shape) when eta > 0")
        check_same_shape("x_t", x_t, "noise", noise)
        prev_sample = prev_sample + sigma * noise
    return StepOutput(prev_sample=prev_sample, pred_x0=pred_x0)


def ddim_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading") -> list[int]:
    """The decreasing timesteps a DDIM run visits (the same as diffusers' timestep_spacing).

    "leading":  0, k, 2k, ... with k = T // num_steps (DDIM paper, diffusers' default).
    "trailing": T-1, T-1-k, ... so the first step starts at the noisiest t (Lin et al. 2024).
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {num_steps}")
    if spacing == "leading":
        step = num_train_steps // num_steps
        return [i * step for i in reversed(range(num_steps))]
    if spacing == "trailing":
        step = num_train_steps / num_steps
        return [round(num_train_steps - i * step) - 1 for i in range(num_steps)]
    raise ValueError(f"spacing must be 'leading' or 'trailing', got {spacing!r}")


def _predict(model: NoisePredictor, x: torch.Tensor, t: int) -> torch.Tensor:
    t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    with autocast(x.device):
        eps = model(x, t_batch)
    if eps.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(eps.shape)} for input {tuple(x.shape)}: it must predict eps with the input's shape")
    return eps.float()


def _start(shape: tuple[int, ...], generator: torch.Generator | None, device, x_init: torch.Tensor | None) -> torch.Tensor:
    """x_T: the given x_init (checked against `shape`), or fresh noise from the generator."""
    if x_init is None:
        return randn(shape, generator, device)
    if tuple(x_init.shape) != tuple(shape):
        raise ValueError(f"x_init must have the sample shape {tuple(shape)}, got {tuple(x_init.shape)}")
    return x_init.to(device)


def _capture(out: SampleOutput, t: int, x: torch.Tensor, pred_x0: torch.Tensor) -> None:
    out.timesteps.append(t)
    out.trajectory.append(x.detach().cpu())
    out.pred_x0_trajectory.append(pred_x0.detach().cpu())


@torch.no_grad()
def ddpm_sample(
    model: NoisePredictor,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    variance: str = "small",
    clip_x0: float | None = None,
    capture_every: int | None = None,
    progress: bool = True,
    x_init: torch.Tensor | None = None,
    on_step: Callable[[], None] | None = None,
) -> SampleOutput:
    """Draw samples with all T DDPM steps (Ho et al. 2020, Algorithm 2).

    Args:
        model: eps_theta(x_t, t).
        shape: (B, ...) of the samples.
        schedule: the schedule the model was trained with.
        generator: a seeded CPU generator; all noise comes from it (same seed, same samples
            on every device).
        capture_every: record every this many steps (and the last one) in the output. For recorded
            step i: timesteps[i] is the step's code index k (the paper's t = k + 1); trajectory[i] is
            the step's OUTPUT, x_{t-1}; pred_x0_trajectory[i] is the estimate of x_0 made from the
            step's INPUT, x_t. So the input of step i is trajectory[i - 1] when capture_every=1
            (x_T for i = 0).
        progress: show a progress bar.
        x_init: start from this x_T (of `shape`) instead of drawing it from the generator.
        on_step: called after every step (e.g. to advance one progress bar over many batches).
    """
    schedule = schedule.to(device)
    x = _start(shape, generator, device, x_init)  # x_T ~ N(0, I)
    out = SampleOutput(samples=x)
    steps = list(reversed(range(schedule.num_steps)))
    for i, t in enumerate(tqdm(steps, desc="DDPM", disable=not progress, leave=False)):
        eps = _predict(model, x, t)
        noise = randn(shape, generator, device) if t > 0 else None
        step = ddpm_step(x, t, eps, schedule, noise=noise, variance=variance, clip_x0=clip_x0)
        x = step.prev_sample
        if capture_every and (i % capture_every == 0 or t == 0):
            _capture(out, t, x, step.pred_x0)
        if on_step is not None:  # e.g. advance an outer progress bar
            on_step()
    out.samples = x
    return out


@torch.no_grad()
def ddim_sample(
    model: NoisePredictor,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    num_steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    spacing: str = "leading",
    clip_x0: float | None = None,
    capture_every: int | None = None,
    progress: bool = True,
    x_init: torch.Tensor | None = None,
    on_step: Callable[[], None] | None = None,
) -> SampleOutput:
    """Draw samples with `num_steps` DDIM steps (Song et al. 2021), eq. (2.7).

    Args: as `ddpm_sample`, plus
        num_steps: how many model evaluations (1..T).
        eta: 0 for deterministic DDIM, up to 1.
        spacing: "leading" or "trailing" (see `ddim_timesteps`).
        capture_every: as in `ddpm_sample`: trajectory[i] is the step's OUTPUT (x at the next
            timestep visited, or clean data after the last step) and pred_x0_trajectory[i] comes
            from its INPUT x_t, at code index timesteps[i].
    """
    schedule = schedule.to(device)
    timesteps = ddim_timesteps(schedule.num_steps, num_steps, spacing)
    x = _start(shape, generator, device, x_init)  # x_T ~ N(0, I)
    out = SampleOutput(samples=x)
    for i, t in enumerate(tqdm(timesteps, desc=f"DDIM {num_steps}", disable=not progress, leave=False)):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        eps = _predict(model, x, t)
        noise = randn(shape, generator, device) if eta > 0 and t_prev >= 0 else None
        step = ddim_step(x, t, t_prev, eps, schedule, eta=eta, noise=noise, clip_x0=clip_x0)
        x = step.prev_sample
        if capture_every and (i % capture_every == 0 or t_prev < 0):
            _capture(out, t, x, step.pred_x0)
        if on_step is not None:  # e.g. advance an outer progress bar
            on_step()
    out.samples = x
    return out
