"""Flow matching and rectified flow (chapter 08): learn the velocity of a straight path from
data to noise, then integrate it backwards.

Notation (chapter 08). Flow time t runs over [0, 1], from data (t = 0) to noise (t = 1);
chapter 07 called it tau. The network sees t * TIME_SCALE, as Stable Diffusion 3 does.

    x_t = (1 - t) x_0 + t eps                                   the path, eq. (8.1)
    u_t = d x_t / dt = eps - x_0                                its velocity, eq. (8.2)
    L(theta) = E_{t, x_0, eps} || v_theta(x_t, t) - (eps - x_0) ||^2     eq. (8.3)
    v*(x, t) = E[eps - x_0 | x_t = x]                           what L learns, eq. (8.4)

    Euler:  x_{t'} = x_t + (t' - t) v_theta(x_t, t)              eq. (8.5)

    x_VP = (a + s) x_t  at  t = s / (a + s),  a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)   eq. (8.6)
    x_0 = x_t - t v,   eps = x_t + (1 - t) v,   v = (eps - x_t) / (1 - t)    eq. (8.7)
    v-prediction:  v_VP = a eps - s x_0                          eq. (8.8)

    Heun:   average the slope at both ends                       eq. (8.9)
    shift:  t -> shift t / (1 + (shift - 1) t)                   eq. (8.10)

A "velocity model" is any callable `model(x_t, t_scaled) -> v` with t_scaled = t * TIME_SCALE a
float tensor (B,); a class-conditional one takes labels too, as the UNet does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from diffedu.course.checks import broadcast_to_batch
from diffedu.course.device import randn
from diffedu.samplers import StepOutput, predict, x0_from_eps

TIME_SCALE = 1000.0  # the network's time input is t * 1000: the range the diffusion UNet's embedding was built for
FLOW_METHODS = ("euler", "heun")  # Euler (8.5), Heun (8.9)


def flow_path(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, eq. (8.1); t a number or one value per sample (B,)."""
    if x0.shape != noise.shape:
        raise ValueError(f"x0 and noise must have the same shape, got {tuple(x0.shape)} and {tuple(noise.shape)}")
    t = broadcast_to_batch(t, x0)
    return (1 - t) * x0 + t * noise


def conditional_velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """u_t = d x_t / dt = eps - x_0, eq. (8.2): the same at every t (the path is straight)."""
    return noise - x0


def x0_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_0 = x_t - t v, eq. (8.7)."""
    return x_t - broadcast_to_batch(t, x_t) * velocity


def eps_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """eps = x_t + (1 - t) v, eq. (8.7)."""
    return x_t + (1 - broadcast_to_batch(t, x_t)) * velocity


def velocity_from_eps(x_t: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """v = (eps - x_t) / (1 - t), eq. (8.7): a noise predictor read as a velocity (t < 1)."""
    return (eps - x_t) / (1 - broadcast_to_batch(t, x_t))


def flow_time_from_alpha_bar(alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """The flow time whose x_t is a rescaled VP x_t, eq. (8.6): t = s / (a + s) with a = sqrt(alpha_bar),
    s = sqrt(1 - alpha_bar). Then x_t(flow) = x_t(VP) / (a + s)."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return s / (a + s)


def v_prediction_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022), eq. (8.8), with x_0 from eq. (2.4)."""
    alpha_bar = broadcast_to_batch(alpha_bar, x_t)
    x0 = x0_from_eps(x_t, eps, alpha_bar)
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0


def eps_from_v_prediction(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: torch.Tensor | float) -> torch.Tensor:
    """eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t: eq. (8.8) solved for eps."""
    alpha_bar = broadcast_to_batch(alpha_bar, x_t)
    return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * x_t


def flow_matching_loss(model, x0: torch.Tensor, generator: torch.Generator | None = None,
                       labels: torch.Tensor | None = None) -> torch.Tensor:
    """One Monte-Carlo estimate of eq. (8.3): t ~ Uniform(0, 1) and eps ~ N(0, I) per sample (from the
    CPU `generator`), the squared error of the predicted velocity averaged over coordinates and batch.

    Args:
        model: v_theta(x_t, t * TIME_SCALE), or v_theta(x_t, t * TIME_SCALE, labels) when labels are given.
        x0: clean data (B, ...), on the model's device.
    """
    t = torch.rand(x0.shape[0], generator=generator).to(x0.device)  # (B,)
    noise = randn(x0.shape, generator, x0.device)
    x_t = flow_path(x0, noise, t)
    time_input = t * TIME_SCALE
    velocity_pred = model(x_t, time_input) if labels is None else model(x_t, time_input, labels)
    return (velocity_pred.float() - conditional_velocity(x0, noise)).pow(2).flatten(1).mean(1).mean()


@dataclass
class FlowSettings:
    """What a flow-matching model learns besides its network and optimiser (chapter 08)."""

    kind: str = "flow_matching"  # marks the checkpoint: a velocity model on the path (8.1)
    time_scale: float = TIME_SCALE
    label_drop: float = 0.1  # fraction of labels replaced by the null class, for guidance

    def to_dict(self) -> dict:
        return asdict(self)


def flow_loss_fn(settings: FlowSettings):
    """loss_fn(model, (images, labels), generator) for `diffedu.train.train`: eq. (8.3), with each
    label replaced by the model's null class with probability settings.label_drop."""

    def loss_fn(model, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        drop = torch.rand(labels.shape[0], generator=generator).to(labels.device) < settings.label_drop
        labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        return flow_matching_loss(model, images, generator, labels)

    return loss_fn


def shift_times(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t -> shift t / (1 + (shift - 1) t), eq. (8.10) (Esser et al. 2024): shift > 1 spends more of the steps
    at high noise, as diffusers' FlowMatchEulerDiscreteScheduler(shift=...) does; 0 and 1 stay put."""
    if shift <= 0:
        raise ValueError(f"shift must be positive, got {shift}")
    return shift * t / (1 + (shift - 1) * t)


def flow_times(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The time grid of an N-step run: N + 1 times from 1 (noise) to 0 (data), evenly spaced, then
    shifted by eq. (8.10); float64 (steps + 1,)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return shift_times(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift)


def predict_velocity(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """v_theta(x, t) for a whole batch at flow time t; the network sees t * TIME_SCALE."""
    return predict(model, x, torch.full((x.shape[0],), t * TIME_SCALE, device=x.device))


def clipped_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: float, clip_x0: float | None) -> torch.Tensor:
    """The velocity with its x_0 estimate (8.7) clamped to +-clip_x0: v = (x_t - clamp(x_t - t v)) / t, so that
    eps and x_0 both point at the clipped x_0 (the flow twin of DDIM's clipping, chapter 02). Unchanged at t = 0
    or when clip_x0 is None."""
    if clip_x0 is None or t == 0:
        return velocity
    return (x_t - x0_from_velocity(x_t, velocity, t).clamp(-clip_x0, clip_x0)) / t


def euler_step(x_t: torch.Tensor, t: torch.Tensor | float, t_next: torch.Tensor | float, velocity: torch.Tensor) -> torch.Tensor:
    """x_{t'} = x_t + (t' - t) v, eq. (8.5); t' < t moves towards data. Times are numbers or one per sample (B,)."""
    return x_t + broadcast_to_batch(torch.as_tensor(t_next) - torch.as_tensor(t), x_t) * velocity


def flow_states(model, x: torch.Tensor, times: torch.Tensor, method: str = "euler",
                clip_x0: float | None = None) -> Iterator[StepOutput]:
    """Integrate dx/dt = v_theta(x, t) from x at times[0] down to times[-1] with Euler (8.5) or Heun (8.9),
    one step at a time; model(x_t, t * TIME_SCALE) -> v. With clip_x0, every velocity is `clipped_velocity`."""
    if method not in FLOW_METHODS:
        raise ValueError(f"method must be one of {', '.join(FLOW_METHODS)}, got {method!r}")
    times = times.tolist()
    for t, t_next in zip(times[:-1], times[1:]):
        velocity = clipped_velocity(x, predict_velocity(model, x, t), t, clip_x0)
        x_next = euler_step(x, t, t_next, velocity)
        if method == "heun":  # eq. (8.9): the slope at the Euler point, then the average of both slopes
            velocity_next = clipped_velocity(x_next, predict_velocity(model, x_next, t_next), t_next, clip_x0)
            x_next = euler_step(x, t, t_next, (velocity + velocity_next) / 2)
        yield StepOutput(x_next, x0_from_velocity(x, velocity, t), t)
        x = x_next


@torch.no_grad()
def flow_solve(model, x: torch.Tensor, times: torch.Tensor, method: str = "euler", clip_x0: float | None = None) -> torch.Tensor:
    """The end of `flow_states`: x carried from times[0] to times[-1] (one batch, no capture)."""
    for step in flow_states(model, x, times, method, clip_x0):
        x = step.prev_sample
    return x
