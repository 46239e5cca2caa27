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

`restore(unet, schedule, y, operator, method, steps)` is the front door: any method, a batch of
observations, one seed, one progress bar. Each method is a generator of steps, like `samplers.ddim_states`, so `course.trajectory.run_steps`
runs it with a progress bar:

    sdedit_states   noise a first guess to timestep k_start and run DDIM from there (Meng et al. 2022), eq. (10.4)
    denoise_states  y = x_0 + sigma_y n is x_k of (1.5) divided by sqrt(alpha_bar_k) for the k whose noise-to-signal
                    ratio is sigma_y: start DDIM there, with nothing added, eq. (10.8)
    upscaler_states DDIM with a network trained on pairs (x_0, y), which sees A^+ y beside x_t: p(x_0 | y)
                    learned directly, as Stable Diffusion's x4 upscaler does, eq. (10.7)
    ddnm_states     DDIM whose x_0 estimate keeps A^+ y and takes only the null space from the model
                    (Wang et al. 2023), eq. (10.5): noiseless linear A
    dps_states      DDIM plus a gradient step on ||y - A pred_x0(x_t)||^2 through the network
                    (Chung et al. 2023), eq. (10.6): noisy or non-linear A
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from diffedu.course.checks import broadcast_to_batch, check_same_shape
from diffedu.course.device import randn
from diffedu.samplers import (NoisePredictor, StepOutput, alpha_bar_at, clipped_prediction, ddim_states, ddim_step,
                              ddim_timesteps, eps_from_x0, next_times, predict_noise, step_time, x0_from_eps)
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
    """x_0 that agrees with y where A looks and with pred_x0 elsewhere, eq. (10.5):

        A^+ y + (I - A^+ A) pred_x0  =  pred_x0 + A^+ (y - A pred_x0)

    For A A^+ = I, A of the result is exactly y."""
    return pred_x0 + operator.pinv(y - operator(pred_x0))


def ddnm_step(x_t: torch.Tensor, k: int, k_next: int, eps: torch.Tensor, schedule: NoiseSchedule, operator, y: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None, clip_x0: float | None = 1.0) -> StepOutput:
    """One DDNM step (Wang et al. 2023): the model's x_0 estimate (2.4), clipped if asked, corrected by
    (10.5), then the DDIM step (2.7) towards the corrected estimate (with the eps that points at it)."""
    alpha_bar = alpha_bar_at(schedule, step_time(k, schedule, x_t), x_t)
    pred_x0, _ = clipped_prediction(x_t, alpha_bar, eps, clip_x0)
    pred_x0 = range_null_x0(pred_x0, operator, y)  # eq. (10.5)
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
    """One DPS step (Chung et al. 2023, Algorithm 1), eq. (10.6):

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
    """SDEdit (Meng et al. 2022), eq. (10.4): noise a first guess of x_0 (e.g. A^+ y) to timesteps[0]
    with (1.5), then run DDIM over `timesteps`. A later start keeps less of the guess."""
    noise = randn(guess.shape, generator, guess.device)
    x = q_sample(guess, timesteps[0], noise, schedule)
    yield from ddim_states(model, x, schedule, timesteps, eta, generator, clip_x0)


def matching_timestep(schedule: NoiseSchedule, noise_std: float) -> int:
    """The code timestep k whose sqrt(1 - alpha_bar_k) / sqrt(alpha_bar_k) is closest to sigma_y."""
    if noise_std <= 0:
        raise ValueError(f"denoising needs noise: sigma_y > 0, got {noise_std}")
    ratio = schedule.snr.double().rsqrt()  # (T,) sqrt(1 - alpha_bar_k) / sqrt(alpha_bar_k), increasing with k
    return int((ratio - noise_std).abs().argmin())


def denoise_states(model: NoisePredictor, y: torch.Tensor, schedule: NoiseSchedule, steps: int, noise_std: float,
                   eta: float = 0.0, generator: torch.Generator | None = None, clip_x0: float | None = 1.0) -> Iterator[StepOutput]:
    """Denoising as the end of sampling, eq. (10.8): sqrt(alpha_bar_k) y = sqrt(alpha_bar_k) x_0 + sqrt(alpha_bar_k) sigma_y n
    is distributed as x_k of (1.5) when sqrt(alpha_bar_k) sigma_y = sqrt(1 - alpha_bar_k), so DDIM runs from
    there over `steps` steps (evenly spaced from k down). SDEdit (10.4) without noise of its own."""
    k_start = matching_timestep(schedule, noise_std)
    alpha_bar = schedule.alpha_bar[k_start].to(y.device, y.dtype)
    timesteps = sorted({round(k_start * (1 - i / steps)) for i in range(steps)}, reverse=True)
    yield from ddim_states(model, alpha_bar.sqrt() * y, schedule, timesteps, eta, generator, clip_x0)


# The noise levels sigma_y a trained upscaler (mnist-sr) is told about, by index: its "class" labels.
UPSCALER_NOISE_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def noise_level_index(noise_std: float) -> int:
    """The index in UPSCALER_NOISE_LEVELS of sigma_y (one of those values, to within 1e-6)."""
    for index, level in enumerate(UPSCALER_NOISE_LEVELS):
        if abs(noise_std - level) < 1e-6:
            return index
    raise ValueError(f"the upscaler knows sigma_y in {UPSCALER_NOISE_LEVELS}, got {noise_std}")


def upscaler_predictor(model, operator, y: torch.Tensor, noise_std: float = 0.0):
    """eps_theta(x_t, t) for the observation y (B, ...): the upscaler's network with A^+ y as its
    condition image and sigma_y's index as its label, eq. (10.7)."""
    condition = operator.pinv(y)  # (B, C, H, W): y brought to the image's size
    levels = torch.full((y.shape[0],), noise_level_index(noise_std), device=y.device)

    def predict(x_t: torch.Tensor, time_input: torch.Tensor) -> torch.Tensor:
        return model(x_t, time_input, levels, condition)

    return predict


def upscaler_states(model, x: torch.Tensor, schedule: NoiseSchedule, timesteps: list[int], operator, y: torch.Tensor,
                    noise_std: float = 0.0, eta: float = 0.0, generator: torch.Generator | None = None,
                    clip_x0: float | None = 1.0) -> Iterator[StepOutput]:
    """DDIM from x = x_T with a network trained to predict the noise of x_t given y, eq. (10.7)."""
    check_same_shape("y", y, "A x_T", operator(x))
    yield from ddim_states(upscaler_predictor(model, operator, y, noise_std), x, schedule, timesteps, eta, generator, clip_x0)


def upscale(model, schedule: NoiseSchedule, y: torch.Tensor, steps: int = 20, noise_std: float = 0.0, seed: int = 0,
            factor: int = 4, eta: float = 0.0) -> torch.Tensor:
    """x_0 (B, C, factor H, factor W) in [-1, 1] for low-resolution observations y (B, C, H, W) with noise
    sigma_y = noise_std: DDIM over `steps` steps with the upscaler (eq. 10.7), x_T drawn from `seed` on
    the CPU (so one y gives the same picture in any batch, on any device)."""
    operator = Downsample(factor)
    generator = torch.Generator().manual_seed(seed)
    shape = (y.shape[0], y.shape[1], y.shape[2] * factor, y.shape[3] * factor)
    x = randn(shape, generator, y.device)
    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps)
    with torch.no_grad():
        for step in upscaler_states(model, x, schedule, timesteps, operator, y, noise_std, eta, generator):
            x = step.prev_sample
    return x.clamp(-1, 1)


METHODS = ("ddnm", "dps", "sdedit", "denoise")
DEFAULT_ETA = {"ddnm": 0.85, "dps": 1.0, "sdedit": 0.0, "denoise": 0.0}  # the papers' choices; 0 for the two SDEdits
DPS_STEP_SIZE = 1.0  # zeta of (10.6): the best of 0.3, 1 and 3 for x4 super-resolution of digits


def restore(unet, schedule: NoiseSchedule, y: torch.Tensor, operator, method: str = "ddnm", steps: int = 50,
            noise_std: float = 0.0, seed: int = 0, step_size: float = DPS_STEP_SIZE, sdedit_start: int = 500,
            eta: float | None = None, progress: bool = True) -> torch.Tensor:
    """x_0 (B, 1, 28, 28) in [-1, 1] for observations y of A = operator, with a class-conditional noise
    predictor used without a label (its null class: any digit) as the prior:

        "ddnm"     eq. (10.5), eta = 0.85 as in the paper: noiseless linear A
        "dps"      eq. (10.6), ancestral steps (eta = 1), zeta = step_size: noisy or non-linear A
        "sdedit"   eq. (10.4), from A^+ y noised to the largest of the `steps` timesteps <= sdedit_start
        "denoise"  eq. (10.8), A = I: from y, with `steps` steps below its matching timestep

    eta (DDIM's noise, 0 to 1) overrides the method's own (DEFAULT_ETA).
    The start x_T and all later noise come from one CPU generator seeded with `seed`."""
    from diffedu.course.trajectory import run_steps
    from diffedu.guidance import guided_predictor

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "denoise" and not isinstance(operator, Identity):
        raise ValueError("method 'denoise' restores y = x_0 + sigma_y n (operator Identity()): use ddnm or dps for others")
    device = y.device
    null = torch.full((y.shape[0],), unet.null_class, device=device) if unet.null_class is not None else None
    model = guided_predictor(unet, null, 1.0) if null is not None else unet
    generator = torch.Generator().manual_seed(seed)
    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps)
    x = randn((y.shape[0], unet.config.image_channels, unet.config.image_size, unet.config.image_size), generator, device)
    eta = DEFAULT_ETA[method] if eta is None else eta
    if method == "ddnm":
        states = ddnm_states(model, x, schedule, timesteps, operator, y, eta, generator)
    elif method == "dps":
        states = dps_states(model, x, schedule, timesteps, operator, y, step_size, eta, generator)
    elif method == "sdedit":
        timesteps = [k for k in timesteps if k <= sdedit_start]
        states = sdedit_states(model, operator.pinv(y), schedule, timesteps, generator, eta)
    else:
        states = denoise_states(model, y, schedule, steps, noise_std, eta, generator)
        timesteps = range(steps)
    with torch.no_grad():  # DPS takes its gradient inside (torch.enable_grad in dps_step)
        run = run_steps(x, states, len(timesteps), progress=progress,
                        desc=f"restoring {y.shape[0]} images ({method}, {len(timesteps)} steps)")
    return run.samples.clamp(-1, 1)
