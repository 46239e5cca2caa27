"""Restoration as posterior sampling (chapter 10): a diffusion model trained on clean data only,
used as the prior for an observation of it.

    y = A x_0 + sigma_y n,   n ~ N(0, I)                          eq. (10.1)
    p(x_0 | y)  is proportional to  p(x_0) N(y; A x_0, sigma_y^2 I)   eq. (10.2)

An operator is A with its pseudo-inverse: `operator(x)` is A x, `operator.pinv(y)` is A^+ y, with
A A^+ y = y, so that A^+ A projects onto the part of x that A sees (its range) and I - A^+ A onto
the part it does not (its null space):

    Downsample(factor)   the mean of each factor x factor block: super-resolution
    Mask(keep)           the pixels where keep is 1: inpainting
    Identity()           every pixel, with noise: denoising
    Matrix(A)            any A (m, n) on vectors (B, n): the 2-D checks of chapter 10

Each method is a generator of steps, like `samplers.ddim_states`, so `course.trajectory.run_steps`
runs it with a progress bar:

    sdedit_states   noise a first guess to timestep k_start and run DDIM from there (Meng et al. 2022), eq. (10.3)
    ddnm_states     DDIM whose x_0 estimate keeps A^+ y and takes only the null space from the model
                    (Wang et al. 2023), eq. (10.4): noiseless linear A
    dps_states      DDIM plus a gradient step on ||y - A pred_x0(x_t)||^2 through the network
                    (Chung et al. 2023), eq. (10.5): noisy or non-linear A
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from diffedu.course.checks import broadcast_to_batch, check_same_shape
from diffedu.course.device import randn
from diffedu.samplers import (NoisePredictor, StepOutput, alpha_bar_at, clipped_prediction, ddim_states, ddim_step,
                              eps_from_x0, next_times, predict_noise, step_time, x0_from_eps)
from diffedu.schedules import NoiseSchedule, q_sample


class Identity:
    """A = I: denoising, y = x_0 + sigma_y n."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y


class Downsample:
    """A x = the mean of each factor x factor block, (B, C, H, W) -> (B, C, H/f, W/f).

    A^+ y repeats each value over its block: A A^+ y = y, and A^+ A x replaces every block of x by
    its mean, the orthogonal projection onto block-constant images."""

    def __init__(self, factor: int):
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
        self.factor = factor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] % self.factor or x.shape[-2] % self.factor:
            raise ValueError(f"Downsample({self.factor}) needs images (B, C, H, W) with H and W multiples of "
                             f"{self.factor}, got {tuple(x.shape)}")
        return F.avg_pool2d(x, self.factor)

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.factor, dim=-2).repeat_interleave(self.factor, dim=-1)


class Mask:
    """A x = keep * x: the pixels where keep is 1 are observed, the others are not (set to 0).
    A is its own pseudo-inverse (a projection). keep: (1 or B, C, H, W) of zeros and ones."""

    def __init__(self, keep: torch.Tensor):
        if not ((keep == 0) | (keep == 1)).all():
            raise ValueError("keep must hold only 0 (missing) and 1 (observed)")
        self.keep = keep.float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.keep.to(x.device, x.dtype) * x

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self(y)


class Matrix:
    """A x = x A^T for vectors x (B, n) and a matrix A (m, n); A^+ by torch.linalg.pinv. For full row
    rank (m <= n independent rows) A A^+ = I."""

    def __init__(self, matrix: torch.Tensor):
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be (m, n), got {tuple(matrix.shape)}")
        self.matrix = matrix
        self.matrix_pinv = torch.linalg.pinv(matrix.double()).to(matrix.dtype)  # (n, m)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix.to(x.device, x.dtype).T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.matrix_pinv.to(y.device, y.dtype).T


def observe(x0: torch.Tensor, operator, noise_std: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """y = A x_0 + sigma_y n, eq. (10.1), with the noise drawn on the CPU (the same y on every device)."""
    if noise_std < 0:
        raise ValueError(f"noise_std (sigma_y) must be >= 0, got {noise_std}")
    y = operator(x0)
    return y + noise_std * randn(y.shape, generator, y.device, y.dtype) if noise_std > 0 else y


def range_null_x0(pred_x0: torch.Tensor, operator, y: torch.Tensor) -> torch.Tensor:
    """x_0 that agrees with y where A looks and with pred_x0 elsewhere, eq. (10.4):

        A^+ y + (I - A^+ A) pred_x0  =  pred_x0 + A^+ (y - A pred_x0)

    For A A^+ = I, A of the result is exactly y."""
    return pred_x0 + operator.pinv(y - operator(pred_x0))


def ddnm_step(x_t: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule: NoiseSchedule, operator, y: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip_x0: float | None = 1.0) -> StepOutput:
    """One DDNM step (Wang et al. 2023): the model's x_0 estimate (2.4), clipped if asked, corrected by
    (10.4), then the DDIM step (2.7) towards the corrected estimate (with the eps that points at it)."""
    alpha_bar = alpha_bar_at(schedule, step_time(k, schedule, x_t), x_t)
    pred_x0, _ = clipped_prediction(x_t, alpha_bar, eps, clip_x0)
    pred_x0 = range_null_x0(pred_x0, operator, y)  # eq. (10.4)
    eps = eps_from_x0(x_t, pred_x0, alpha_bar)  # the noise that points at the corrected estimate
    return ddim_step(x_t, k, k_next, eps, schedule, eta, noise)


def ddnm_states(model: NoisePredictor, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int], operator, y: torch.Tensor,
                eta: float = 0.0, generator: torch.Generator | None = None, clip_x0: float | None = 1.0) -> Iterator[StepOutput]:
    """DDNM from x = x_T over `timesteps`, one step at a time; the result satisfies A x = y (noiseless A)."""
    for k, k_next in next_times(timesteps):
        eps = predict_noise(model, x, k)
        noise = randn(x.shape, generator, x.device) if eta > 0 and k_next >= 0 else None
        step = ddnm_step(x, k, k_next, eps, schedule, operator, y, eta, noise, clip_x0)
        yield step
        x = step.prev_sample


def dps_step(model: NoisePredictor, x_t: torch.Tensor, k: int, k_next: int, schedule: NoiseSchedule, operator, y: torch.Tensor,
             step_size: float, eta: float = 1.0, noise: torch.Tensor | None = None, clip_x0: float | None = 1.0) -> StepOutput:
    """One DPS step (Chung et al. 2023, Algorithm 1), eq. (10.5):

        x' = the DDIM step (2.7) from x_t
        x_{k'} = x' - zeta grad_{x_t} ||y - A pred_x0(x_t)||^2,   zeta = step_size / ||y - A pred_x0(x_t)||

    per sample, with the gradient taken through the network (pred_x0 depends on x_t through eps) on the
    unclipped pred_x0, and the DDIM step clipped as every sampler of the course (without it, ancestral
    sampling with mnist-unet collapses: FID above 1,000)."""
    check_same_shape("y", y, "A x_t", operator(x_t))
    alpha_bar = alpha_bar_at(schedule, step_time(k, schedule, x_t), x_t)
    with torch.enable_grad():
        x_in = x_t.detach().requires_grad_(True)
        eps = predict_noise(model, x_in, k)
        residual = (y - operator(x0_from_eps(x_in, eps, alpha_bar))).flatten(1)  # (B, m)
        distance = residual.norm(dim=1)  # (B,)
        (grad,) = torch.autograd.grad(distance.square().sum(), x_in)  # each sample's term depends on its own x_t only
    step = ddim_step(x_t, k, k_next, eps.detach(), schedule, eta, noise, clip_x0)
    zeta = broadcast_to_batch(step_size / distance.detach().clamp(min=1e-12), x_t)
    return StepOutput(step.prev_sample - zeta * grad, step.pred_x0, k)


def dps_states(model: NoisePredictor, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int], operator, y: torch.Tensor,
               step_size: float = 1.0, eta: float = 1.0, generator: torch.Generator | None = None,
               clip_x0: float | None = 1.0) -> Iterator[StepOutput]:
    """DPS from x = x_T over `timesteps`, one step at a time (eta = 1: ancestral, as in the paper)."""
    for k, k_next in next_times(timesteps):
        noise = randn(x.shape, generator, x.device) if eta > 0 and k_next >= 0 else None
        step = dps_step(model, x, k, k_next, schedule, operator, y, step_size, eta, noise, clip_x0)
        yield step
        x = step.prev_sample


def sdedit_states(model: NoisePredictor, guess: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int],
                  generator: torch.Generator | None = None, eta: float = 0.0, clip_x0: float | None = 1.0) -> Iterator[StepOutput]:
    """SDEdit (Meng et al. 2022), eq. (10.3): noise a first guess of x_0 (e.g. A^+ y) to timesteps[0]
    with (1.5), then run DDIM over `timesteps`. A later start keeps less of the guess."""
    noise = randn(guess.shape, generator, guess.device)
    x = q_sample(guess, timesteps[0], noise, schedule)
    yield from ddim_states(model, x, schedule, timesteps, eta, generator, clip_x0)
