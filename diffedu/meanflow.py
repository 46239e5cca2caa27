"""MeanFlow (chapter 08, section 8): learn the average velocity over an interval, not the velocity at a
time, so that one network call jumps the whole way (Geng et al. 2025). No teacher: the target comes from
the data, the noise and the network itself.

On the path (8.1), with the flow's velocity v(z_t, t) (8.4), the average velocity from time t down to r is

    u(z_t, r, t) = 1 / (t - r) * integral_r^t v(z_tau, tau) d tau                eq. (8.18)
    z_r = z_t - (t - r) u(z_t, r, t)                                          one exact jump, eq. (8.19)

Multiply (8.18) by (t - r) and differentiate in t along the trajectory (r held fixed):

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t)                       the MeanFlow identity, eq. (8.20)
    d/dt u = (du/dz) v + du/dt (partial)                                       a Jacobian-vector product, eq. (8.21)

with the tangent (v, 0, 1) in the inputs (z, r, t): one forward-mode pass (torch.func.jvp), no second
derivatives. Training regresses the network on the identity's right-hand side, gradient stopped:

    L(theta) = E w || u_theta(z_t, r, t) - sg(v - (t - r) ((du_theta/dz) v + partial_t u_theta)) ||^2   eq. (8.22)

with v = eps - x_0 the path's own velocity (8.2), and the adaptive weight w = 1 / (error + c) of the paper.
At r = t the target is v itself: (8.22) contains flow matching (8.3). Guidance is trained in (the paper's
eq. (13)): v is replaced by v_w = w (eps - x_0) + (1 - w) u_theta(z_t, t, t | no label).

The network is chapter 03's UNet with a second time input, the interval t - r (UNetConfig.interval_input).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from torch.func import jvp

from diffedu.course.checks import broadcast_to_batch
from diffedu.course.device import randn
from diffedu.flow import TIME_SCALE, conditional_velocity, flow_path
from diffedu.samplers import StepOutput, predict


def average_velocity(model, z_t: torch.Tensor, r: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """u_theta(z_t, r, t) (B, C, H, W) for times r <= t (B,): the network sees t * 1000 and (t - r) * 1000."""
    return model(z_t, t * TIME_SCALE, labels, interval_input=(t - r) * TIME_SCALE)


def jump(z_t: torch.Tensor, u: torch.Tensor, r: torch.Tensor | float, t: torch.Tensor | float) -> torch.Tensor:
    """z_r = z_t - (t - r) u, eq. (8.19); times numbers or (B,)."""
    return z_t - broadcast_to_batch(torch.as_tensor(t) - torch.as_tensor(r), z_t) * u


def meanflow_target(u_fn, z_t: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                    velocity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u_theta and its regression target v - (t - r) du/dt of eqs. (8.20)-(8.21), in one forward-mode pass.

    Args:
        u_fn: u_fn(z, r, t) -> u (B, ...), differentiable in all three.
        z_t: (B, ...) points of the path; r, t: (B,) with r <= t; velocity: v at z_t (B, ...), the tangent in z.
    Returns:
        (u, target): u keeps its graph (for the loss), target is detached (the sg of eq. 8.22).
    """
    u, du_dt = jvp(u_fn, (z_t, r, t), (velocity, torch.zeros_like(r), torch.ones_like(t)))
    target = velocity - broadcast_to_batch(t - r, z_t) * du_dt
    return u, target.detach()


@dataclass
class MeanFlowSettings:
    """How `meanflow_loss_fn` draws its intervals and weighs its errors (Geng et al. 2025's choices, see the card)."""

    interval_fraction: float = 0.5  # samples with r < t; the rest have r = t (flow matching)
    time_sampling: str = "logit-normal"  # or "uniform": how the two times are drawn (then sorted so that r <= t)
    time_mean: float = -0.4  # the logit-normal's parameters
    time_std: float = 1.0
    guidance: float = 1.25  # w of v_w; 1.0 trains no guidance in
    label_drop: float = 0.1  # fraction of labels replaced by the null class
    weight_c: float = 1e-3  # adaptive weight 1 / (error + c)

    def to_dict(self) -> dict:
        return asdict(self)


def interval_times(batch: int, settings: MeanFlowSettings, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t) (B,) each: two times (logit-normal or uniform) sorted so that r <= t; r = t for 1 - interval_fraction of them."""
    if settings.time_sampling == "uniform":
        both = torch.rand(2, batch, generator=generator)
    elif settings.time_sampling == "logit-normal":
        both = torch.sigmoid(settings.time_mean + settings.time_std * torch.randn(2, batch, generator=generator))
    else:
        raise ValueError(f"time_sampling must be 'logit-normal' or 'uniform', got {settings.time_sampling!r}")
    r, t = both.min(0).values, both.max(0).values
    same = torch.rand(batch, generator=generator) >= settings.interval_fraction
    return torch.where(same, t, r), t


def meanflow_loss_fn(settings: MeanFlowSettings):
    """loss_fn(model, (images, labels), generator) for `diffedu.train.train`: eq. (8.22) with guidance trained in.
    The JVP runs only for the samples with r < t: at r = t the target is v_w itself."""

    def loss_fn(model, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        device = images.device
        drop = (torch.rand(labels.shape[0], generator=generator) < settings.label_drop).to(device)
        labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        r, t = (time.to(device) for time in interval_times(images.shape[0], settings, generator))
        noise = randn(images.shape, generator, device)
        z_t = flow_path(images, noise, t)
        velocity = conditional_velocity(images, noise)  # (8.2)
        if settings.guidance != 1.0:  # v_w = w v + (1 - w) u(z_t, t, t | no label); unguided for dropped labels
            with torch.no_grad():
                unconditional = average_velocity(model, z_t, t, t, torch.full_like(labels, model.null_class)).float()
            guided = settings.guidance * velocity + (1 - settings.guidance) * unconditional
            velocity = torch.where(drop.view(-1, *[1] * (velocity.ndim - 1)), velocity, guided)
        interval = r < t
        errors = []
        if interval.any():
            z, v, y = z_t[interval], velocity[interval], labels[interval]
            u, target = meanflow_target(lambda z, r, t: average_velocity(model, z, r, t, y).float(), z, r[interval], t[interval], v)
            errors.append((u - target).pow(2).flatten(1).mean(1))
        if (~interval).any():
            same = ~interval
            u = average_velocity(model, z_t[same], t[same], t[same], labels[same]).float()
            errors.append((u - velocity[same]).pow(2).flatten(1).mean(1))
        error = torch.cat(errors)  # (B,) in a different order than the batch: only the mean is used
        weight = 1 / (error.detach() + settings.weight_c)
        return (weight * error).mean()

    return loss_fn


def meanflow_states(model, x: torch.Tensor, times: torch.Tensor, clip_x0: float | None = None) -> Iterator[StepOutput]:
    """One jump (8.19) per interval of `times` (1 down to 0), one call of
    model(z, t * TIME_SCALE, interval_input=(t - r) * TIME_SCALE) -> u each."""
    times = times.tolist()
    for t, r in zip(times[:-1], times[1:]):
        batch = (x.shape[0],)
        u = predict(model, x, torch.full(batch, t * TIME_SCALE, device=x.device),
                    interval_input=torch.full(batch, (t - r) * TIME_SCALE, device=x.device))
        pred_x0 = jump(x, u, 0.0, t)  # an estimate of x_0 from this interval's u: exact only when r = 0
        x_next = jump(x, u, r, t)
        if clip_x0 is not None and r == 0:
            x_next = x_next.clamp(-clip_x0, clip_x0)
        yield StepOutput(x_next, pred_x0, t)
        x = x_next
