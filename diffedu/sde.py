"""The continuous-time view (chapter 07): scores, Langevin dynamics and the probability-flow ODE.

    score          grad_x log q_t(x) = -eps(x, k) / sqrt(1 - alpha_bar_t)             eq. (7.2)
    Langevin       x <- x + (delta / 2) score(x) + sqrt(delta) z,   z ~ N(0, I)        eq. (7.3)
    PF-ODE         in sigma = sqrt((1 - alpha_bar) / alpha_bar) and x_bar = x / sqrt(alpha_bar):
                   d x_bar / d sigma = eps(x, k)                                      eq. (7.7)

An Euler step of (7.7) from one timestep to the next is exactly a DDIM step with eta = 0
(`ode_euler_step`, tested against `samplers.ddim_step`); Heun's method adds a second model
evaluation per step and is second-order accurate (`probability_flow_states`, eq. 7.8).

As in samplers.py, k is the code timestep 0..T-1 and a "model" is `model(x_t, k) -> eps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from diffedu.course.checks import broadcast_to_batch, check_finite, check_same_shape
from diffedu.course.device import randn
from diffedu.course.trajectory import SampleOutput, run_steps
from diffedu.samplers import (
    DEFAULT_SPACING, NoisePredictor, StepOutput, alpha_bar_at, clipped_prediction, ddim_timesteps, initial_noise, next_times,
    predict_noise,
)
from diffedu.schedules import NoiseSchedule

ScoreFunction = Callable[[torch.Tensor], torch.Tensor]

ODE_METHODS = ("euler", "heun")


def _alpha_bar_like(alpha_bar: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar (a number or per-sample (B,)) as a tensor that multiplies x, checked to be in (0, 1)."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=x.dtype, device=x.device)
    if (alpha_bar >= 1).any() or (alpha_bar <= 0).any():
        raise ValueError(f"alpha_bar must be in (0, 1) for eq. (7.2), got {alpha_bar.flatten()[:5].tolist()}: "
                         "at alpha_bar = 1 there is no noise, and eps says nothing about the score")
    return broadcast_to_batch(alpha_bar, x) if alpha_bar.ndim == 1 else alpha_bar


def score_from_eps(eps: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The score of the noised data from a noise prediction, eq. (7.2):
    grad_x log q_t(x) = -eps / sqrt(1 - alpha_bar_t). alpha_bar: a number or one per sample (B,)."""
    return -eps / (1 - _alpha_bar_like(alpha_bar, eps)).sqrt()


def eps_from_score(score: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """Eq. (7.2) solved for eps: the ideal noise prediction -sqrt(1 - alpha_bar) * score."""
    return -(1 - _alpha_bar_like(alpha_bar, score)).sqrt() * score


@torch.no_grad()
def langevin_sample(
    score_fn: ScoreFunction,
    x_init: torch.Tensor,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
    capture_every: int | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Unadjusted Langevin dynamics, eq. (7.3), for `steps` steps of size delta = step_size.

    For small delta and many steps the samples follow the density whose score is score_fn,
    from any start, provided the chain can travel between its modes (see
    `annealed_langevin_sample` for when it cannot).

    Returns:
        (samples, trajectory): the final x (x_init's shape) and CPU copies of x after every
        `capture_every` steps and after the last (empty if None).
    """
    if step_size <= 0 or steps < 1:
        raise ValueError(f"need step_size > 0 and steps >= 1, got {step_size} and {steps}")
    x = check_finite("x_init", x_init).clone()
    trajectory = []
    for step in range(steps):
        noise = randn(x.shape, generator, x.device, dtype=x.dtype)
        x = x + 0.5 * step_size * score_fn(x).to(x.dtype) + math.sqrt(step_size) * noise
        if capture_every and ((step + 1) % capture_every == 0 or step == steps - 1):
            trajectory.append(x.cpu())
    return x, trajectory


@torch.no_grad()
def annealed_langevin_sample(
    score_at: Callable[[torch.Tensor, float], torch.Tensor],
    x_init: torch.Tensor,
    alpha_bars: list[float],
    steps_per_level: int,
    step_size: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019): eq. (7.3) run on the noised densities
    q_t, noisiest first. At high noise the modes overlap and chains move freely between them;
    as the noise shrinks they settle in, in the right proportions.

    Level i uses delta_i = step_size * (1 - alpha_bar_i) / (1 - alpha_bar_last): steps in
    proportion to the noise variance, and `step_size` at the last, least noisy level.

    Args:
        score_at: score_at(x, alpha_bar) -> grad log q_t(x) at the noise level alpha_bar.
        alpha_bars: the levels, increasing (noisiest first), each in (0, 1).
    Returns:
        samples of q at the last level (close to the data when its noise is small).
    """
    if any(not 0 < a < 1 for a in alpha_bars) or list(alpha_bars) != sorted(alpha_bars):
        raise ValueError("alpha_bars must lie in (0, 1) and increase (noisiest level first)")
    x = x_init
    for alpha_bar in alpha_bars:
        delta = step_size * (1 - alpha_bar) / (1 - alpha_bars[-1])
        x, _ = langevin_sample(lambda y, a=alpha_bar: score_at(y, a), x, delta, steps_per_level, generator)
    return x


def sigma_of(alpha_bar: torch.Tensor) -> torch.Tensor:
    """sigma = sqrt((1 - alpha_bar) / alpha_bar), the noise-to-signal ratio of x_t: the time
    variable of eq. (7.7). It is 0 for clean data (alpha_bar = 1)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def ode_euler_step(x_t: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """One Euler step of the probability-flow ODE (7.7) from timestep k to k_next < k
    (k_next = -1: to clean data):

        x_bar_t = x_t / sqrt(alpha_bar_t),   x_bar_{t'} = x_bar_t + (sigma_{t'} - sigma_t) eps,
        x_{t'}  = sqrt(alpha_bar_{t'}) x_bar_{t'}

    which is algebraically the same as DDIM with eta = 0, eq. (2.7).
    """
    check_same_shape("x_t", x_t, "eps", eps)
    if not -1 <= k_next < k:
        raise ValueError(f"k_next must satisfy -1 <= k_next < k = {k}, got {k_next}")
    alpha_bar = alpha_bar_at(schedule, torch.tensor([k]), x_t)
    alpha_bar_next = alpha_bar_at(schedule, torch.tensor([k_next]), x_t)
    x_bar = x_t / alpha_bar.sqrt()
    x_bar_next = x_bar + (sigma_of(alpha_bar_next) - sigma_of(alpha_bar)) * eps
    return alpha_bar_next.sqrt() * x_bar_next


def karras_timesteps(schedule: NoiseSchedule, steps: int, rho: float = 7.0, sigma_max: float = 80.0) -> list[int]:
    """Decreasing code timesteps whose sigmas follow Karras et al. (2022, eq. 5):

        sigma_i = (sigma_max^(1/rho) + i / (N - 1) * (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho

    down to the schedule's smallest sigma (k = 0), each rounded to the nearest code timestep
    (the model knows only those) and kept strictly decreasing; rho = 7 crowds the steps at
    small sigma, where the flow (7.7) bends most. The first step still starts at k = T-1, where
    x_T ~ N(0, I), and jumps to sigma_max = 80 as Karras et al.'s does: above that, x_bar only
    grows in proportion to sigma (the cosine schedule's sigma reaches 20,291 at k = T-1), and
    steps spent there are wasted.
    """
    if not 1 <= steps <= schedule.num_train_timesteps:
        raise ValueError(f"steps must be in [1, {schedule.num_train_timesteps}], got {steps}")
    if steps == 1:
        return [schedule.num_train_timesteps - 1]
    sigmas = sigma_of(schedule.alpha_bar.double().cpu())  # (T,), increasing with k
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    low, high = sigmas[0] ** (1 / rho), min(sigmas[-1].item(), sigma_max) ** (1 / rho)
    targets = (high + ramp * (low - high)) ** rho  # (N,), from sigma_max down to sigma_min
    targets[0] = sigmas[-1]  # start from pure noise
    timesteps = [int((sigmas - target).abs().argmin()) for target in targets]
    # several targets can round to one timestep (near k = 0, and near k = T-1 for the cosine
    # schedule, whose sigma leaps from about 60 to 20,291 in its last step): spread them out
    for i in range(1, steps):  # strictly decreasing from T-1 ...
        timesteps[i] = min(timesteps[i], timesteps[i - 1] - 1)
    timesteps[-1] = max(timesteps[-1], 0)
    for i in range(steps - 2, -1, -1):  # ... and not below 0
        timesteps[i] = max(timesteps[i], timesteps[i + 1] + 1)
    return timesteps


def model_prediction(model: NoisePredictor, x: torch.Tensor, k: int, schedule: NoiseSchedule,
                     clip_x0: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred_x0, eps) of the model at (x, k), clipped as `ddim_step` clips them."""
    return clipped_prediction(x, alpha_bar_at(schedule, torch.tensor([k]), x), predict_noise(model, x, k), clip_x0)


def ode_timesteps(schedule: NoiseSchedule, steps: int, spacing: str = DEFAULT_SPACING) -> list[int]:
    """The timesteps of an N-step ODE run: DDIM's ("trailing", "leading") or Karras et al.'s ("karras")."""
    if spacing == "karras":
        return karras_timesteps(schedule, steps)
    return ddim_timesteps(schedule.num_train_timesteps, steps, spacing)


def probability_flow_states(model: NoisePredictor, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int],
                            method: str = "heun", clip_x0: float | None = None) -> Iterator[StepOutput]:
    """Solve the probability-flow ODE (7.7) from x = x_T over `timesteps`, one step at a time.

    method "euler": one model call per step; identical to DDIM with eta = 0.
    method "heun": Heun's method, eq. (7.8): an Euler step to k_next, a second model call
        there, and the step redone with the average of the two slopes. Two steps stay Euler
        steps, so N steps cost 2N - 2 model calls (N >= 2):
        - the last one, to sigma = 0, where the model is not defined;
        - the first one, from sigma_T (157 for the linear schedule, 20,291 for the cosine
          one). Up there x_bar grows in proportion to sigma, so the slope is nearly constant
          and Euler is nearly exact, while the trapezoid rule gives the small end's slope half
          the weight and is badly off (tests/test_sde.py; Karras et al. avoid it with sigma_max = 80).
    """
    if method not in ODE_METHODS:
        raise ValueError(f"method must be one of {', '.join(ODE_METHODS)}, got {method!r}")
    for k, k_next in next_times(timesteps):
        pred_x0, eps = model_prediction(model, x, k, schedule, clip_x0)
        x_next = ode_euler_step(x, k, k_next, eps, schedule)
        if method == "heun" and k != timesteps[0] and k_next >= 0:  # not the first step, nor the last
            _, eps_next = model_prediction(model, x_next, k_next, schedule, clip_x0)
            x_next = ode_euler_step(x, k, k_next, 0.5 * (eps + eps_next), schedule)  # eq. (7.8)
        yield StepOutput(x_next, pred_x0, k)  # pred_x0: the estimate at the start of the step
        x = x_next


@torch.no_grad()
def probability_flow_sample(model: NoisePredictor, shape: tuple[int, ...], schedule: NoiseSchedule, steps: int = 25,
                            method: str = "heun", generator: torch.Generator | None = None, device: torch.device | str = "cpu",
                            spacing: str = DEFAULT_SPACING, clip_x0: float | None = None, x_init: torch.Tensor | None = None,
                            capture_every: int | None = None, progress: bool = True) -> SampleOutput:
    """One batch of `shape` from x_T ~ N(0, I) (or x_init) down to clean data along the ODE (7.7)
    (see `probability_flow_states`). spacing: "trailing", "leading" or "karras" (`ode_timesteps`);
    clip_x0: clamp pred_x0 at every model call and use the eps that matches it (as DDIM)."""
    schedule = schedule.to(device)
    timesteps = ode_timesteps(schedule, steps, spacing)
    x = initial_noise(shape, generator, device, x_init)  # x_T ~ N(0, I)
    states = probability_flow_states(model, x, schedule, timesteps, method, clip_x0)
    return run_steps(x, states, len(timesteps), capture_every=capture_every, progress=progress, desc=f"PF-ODE {method} {steps}")
