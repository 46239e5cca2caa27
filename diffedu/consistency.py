"""Consistency models (chapter 08, section 7): one network call from noise to a digit (Song et al. 2023).

A consistency function maps every point of one ODE trajectory to the trajectory's start, the data:

    f(x_t, t) = f(x_t', t')  for any two points of one trajectory,   f(x, 0) = x          eq. (8.13)

It is built so that it cannot break the boundary condition:

    f_theta(x_t, t) = c_skip(t) x_t + c_out(t) F_theta(x_t, t),  c_skip(0) = 1, c_out(0) = 0     eq. (8.14)

Here c_skip = 1 and c_out = -t, so f_theta = x_t - t F_theta: when F_theta is a velocity this is the x_0
of eq. (8.7), and a flow network is already a (poor) consistency function before any training.

Consistency distillation: for two neighbouring times t > t' of an N-step grid, one guided Euler step of
the teacher carries x_t (a point of the path (8.1)) to x_hat_t' on the same trajectory, so the two must map
to the same x_0:

    x_hat_t' = x_t + (t' - t) v_teacher^w(x_t, t)                           eq. (8.5) with guidance (3.3)
    L_CD(theta) = E d( f_theta(x_t, t), f_theta-(x_hat_t', t') )              eq. (8.15)
    d(a, b) = sqrt(||a - b||^2 / D + c^2) - c   (pseudo-Huber, per image of D pixels)     eq. (8.16)

theta- is the target: an EMA of theta in the first paper (theta- <- mu theta- + (1 - mu) theta), the
current weights with the gradient stopped (mu = 0) since Song & Dhariwal (2024); here mu = 0. At t' = 0 the
target is x_hat_0 itself, exactly, by (8.14): the boundary anchors the chain.

Multistep sampling (one network call per step): x_0 = f(x_1, 1); then, for each later time tau of the grid,
re-noise along (8.1) with fresh noise and map back:

    x_tau = (1 - tau) x_0 + tau eps',   x_0 = f_theta(x_tau, tau)            eq. (8.17)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from diffedu.course.checks import broadcast_to_batch
from diffedu.course.device import randn
from diffedu.flow import TIME_SCALE, euler_step, flow_path
from diffedu.guidance import guided_predictor
from diffedu.samplers import StepOutput, predict


def consistency_function(network_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """f = c_skip(t) x_t + c_out(t) F with c_skip = 1, c_out = -t, eq. (8.14): exactly x_t at t = 0.
    network_output: F_theta(x_t, t) (B, C, H, W); t a number or one value per sample (B,)."""
    return x_t - broadcast_to_batch(t, x_t) * network_output


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """d(a, b) = sqrt(||a - b||^2 / D + c^2) - c per sample (B,), eq. (8.16): squared error for small
    differences, absolute error for large ones (Song & Dhariwal 2024)."""
    squared = (a - b).pow(2).flatten(1).mean(1)  # (B,)
    return (squared + c**2).sqrt() - c


def grid_times(steps: int, generator: torch.Generator | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of `batch` samples a step of the N-step grid t_i = i / N: its start t and end t' = t - 1/N (B,)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    i = torch.randint(1, steps + 1, (batch,), generator=generator)  # (B,) in 1..N
    return i / steps, (i - 1) / steps


def consistency_distillation_loss_fn(teacher, steps: int = 16, guidance: float = 1.0, huber_c: float = 0.03):
    """loss_fn(model, (images, labels), generator) for `diffedu.train.train`: eq. (8.15) on a grid of `steps`
    teacher steps, the teacher guided at w = `guidance`, distance (8.16), target theta- = theta (mu = 0)."""
    teacher.eval().requires_grad_(False)

    def loss_fn(model, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        t, t_next = (time.to(images.device) for time in grid_times(steps, generator, images.shape[0]))
        x_t = flow_path(images, randn(images.shape, generator, images.device), t)
        with torch.no_grad():
            velocity = guided_predictor(teacher, labels, guidance)(x_t, t * TIME_SCALE).float()
            x_next = euler_step(x_t, t, t_next, velocity)  # the teacher's step to t' on the same trajectory
            target = consistency_function(model(x_next, t_next * TIME_SCALE, labels).float(), x_next, t_next)
        prediction = consistency_function(model(x_t, t * TIME_SCALE, labels).float(), x_t, t)
        return pseudo_huber(prediction, target, huber_c).mean()

    return loss_fn


def consistency_states(model, x: torch.Tensor, times: torch.Tensor, noise: torch.Tensor | None = None,
                       clip_x0: float | None = None) -> Iterator[StepOutput]:
    """Multistep consistency sampling, eq. (8.17): one call of model(x_t, t * TIME_SCALE) -> F per time of
    `times` (from 1 down to 0); between calls x_0 is re-noised to the next time with noise[i] (steps - 1, B, ...)."""
    times = times.tolist()
    later = len(times) - 2  # re-noisings: one fewer than the calls
    if later and (noise is None or noise.shape[0] < later or noise.shape[1:] != x.shape):
        raise ValueError(f"{len(times) - 1} consistency steps need noise of shape ({later}, {', '.join(map(str, x.shape))}) "
                         "for the re-noising between calls")
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        pred_x0 = consistency_function(predict(model, x, torch.full((x.shape[0],), t * TIME_SCALE, device=x.device)), x, t)
        if clip_x0 is not None:
            pred_x0 = pred_x0.clamp(-clip_x0, clip_x0)
        x_next = flow_path(pred_x0, noise[i].to(x.device), t_next) if t_next > 0 else pred_x0
        yield StepOutput(x_next, pred_x0, t)
        x = x_next
