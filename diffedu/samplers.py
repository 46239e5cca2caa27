"""The reverse process: DDPM and DDIM steps and sampling loops (chapter 02), and `sample`, the
one entry point that draws images from a trained model.

Notation (chapter 02). Here t is the code timestep, 0..T-1 (the paper's t + 1; see
schedules.py), subscripts are code indices, and alpha_bar_{-1} = 1 (clean data):

    x_t          noisy sample at step t                           (B, ...)
    eps          the noise a model predicts, eps_theta(x_t, t)    (B, ...)
    pred_x0      the model's estimate of x_0                      eq. (2.4)
    t_prev       the step we move to: t - 1 for DDPM, any t' < t for DDIM

A "model" here is any callable `model(x_t, t) -> eps` with t a long tensor of shape (B,).

    sample(model, schedule, n, "ddim", 50, labels=..., guidance=...)   n images, in batches
      └─ ddim_sample / ddpm_sample / sde.probability_flow_sample        one batch, one algorithm
           └─ reverse_loop(x_T, timesteps, step)                        the loop they share
                └─ ddim_step / ddpm_step / sde.ode_euler_step           one step, one equation

Steps: `schedule.num_train_timesteps` (T) is the length of the diffusion the model was trained
on; `steps` is how many steps a sampler takes (at most T).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from diffedu.course.progress import tqdm

from diffedu.course.checks import broadcast_to_batch, check_finite, check_same_shape, check_timesteps
from diffedu.course.device import autocast, randn
from diffedu.guidance import guided_noise_predictor
from diffedu.schedules import NoiseSchedule

NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Which timesteps an N-step run visits (see `ddim_timesteps`), for every sampler in the course.
DEFAULT_SPACING = "trailing"
# What `sample` can do; `python -m diffedu sample --sampler` offers the same names.
SAMPLERS = {
    "ddim": "DDIM, eq. (2.7) with eta = 0: deterministic, `steps` model calls",
    "ancestral": "ancestral sampling on `steps` strided timesteps: DDIM with eta = 1, which is DDPM's posterior "
                 "step (2.6) between them (diffusers' DDPMScheduler with fewer steps)",
    "ddpm": "DDPM, all T steps of eq. (2.6) (Ho et al. 2020, Algorithm 2)",
    "heun": "the probability-flow ODE (7.7) solved with Heun's method, eq. (7.8): 2 * steps - 2 model calls",
}
# The loops look for NaN/inf every this many steps (each look waits for a GPU to finish).
CHECK_EVERY = 10


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

    def record(self, t: int, x: torch.Tensor, pred_x0: torch.Tensor) -> None:
        """Keep CPU copies of one step: its timestep, its output x and its estimate of x_0."""
        self.timesteps.append(t)
        self.trajectory.append(x.detach().cpu())
        self.pred_x0_trajectory.append(pred_x0.detach().cpu())


def alpha_bar_at(schedule: NoiseSchedule, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t broadcast against x, with alpha_bar_{-1} = 1 (t = -1 means "clean")."""
    alpha_bar = schedule.alpha_bar.to(x.device)[t.clamp(min=0).to(x.device)]
    alpha_bar = torch.where(t.to(x.device) < 0, torch.ones_like(alpha_bar), alpha_bar)
    return broadcast_to_batch(alpha_bar, x)


def predict_x0_from_eps(x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """pred_x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t), eq. (2.4):
    eq. (1.5) solved for x_0."""
    check_same_shape("x_t", x_t, "eps", eps)
    t = check_timesteps(t, schedule.num_train_timesteps, batch_size=x_t.shape[0])
    alpha_bar = alpha_bar_at(schedule, t, x_t)
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
    t = check_timesteps(t, schedule.num_train_timesteps, batch_size=x_t.shape[0]).to(x_t.device)
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
    validate: bool = True,
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
        noise: z ~ N(0, I), shape of x_t; required for t > 0 (use `diffedu.course.device.randn`).
        variance: "small" for sigma_t^2 = beta_tilde_t (2.3), "large" for sigma_t^2 = beta_t.
            Both are in the paper; diffusers calls them fixed_small and fixed_large.
        clip_x0: clamp pred_x0 to [-clip_x0, clip_x0] (data range), e.g. 1.0 for images.
        validate: look for NaN/inf in x_t and eps (the sampling loops pass False and look
            every CHECK_EVERY steps: each look waits for a GPU to finish).
    """
    if validate:
        check_finite("x_t", x_t)
        check_finite("eps", eps)
    t_tensor = check_timesteps(torch.full((x_t.shape[0],), int(t)), schedule.num_train_timesteps)
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
    validate: bool = True,
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
        validate: as in `ddpm_step`.
    """
    if validate:
        check_finite("x_t", x_t)
        check_finite("eps", eps)
    t_tensor = check_timesteps(torch.full((x_t.shape[0],), int(t)), schedule.num_train_timesteps)
    if not -1 <= t_prev < t:
        raise ValueError(f"t_prev must satisfy -1 <= t_prev < t = {t}, got {t_prev}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1] (0 = DDIM, 1 = DDPM-like), got {eta}")

    alpha_bar = alpha_bar_at(schedule, t_tensor, x_t)
    alpha_bar_prev = alpha_bar_at(schedule, torch.full_like(t_tensor, t_prev), x_t)
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


def ddim_timesteps(num_train_timesteps: int, steps: int, spacing: str = DEFAULT_SPACING) -> list[int]:
    """The decreasing timesteps an N-step run visits (the same as diffusers' timestep_spacing).

    "trailing": T-1, T-1-k, ... so the first step starts at the noisiest t, where x_T ~ N(0, I)
                is true (Lin et al. 2024); the course's default (DEFAULT_SPACING).
    "leading":  ..., 2k, k, 0 with k = T // steps (the DDIM paper's, diffusers' default).
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


def predict_noise(model: NoisePredictor, x: torch.Tensor, t: int) -> torch.Tensor:
    """eps_theta(x, t) for a whole batch at one timestep t, in float32 (under autocast on a GPU)."""
    t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    with autocast(x.device):
        eps = model(x, t_batch)
    if eps.shape != x.shape:
        raise ValueError(f"the model returned shape {tuple(eps.shape)} for input {tuple(x.shape)}: "
                         "it must predict eps with the input's shape")
    return eps.float()


def initial_noise(shape: tuple[int, ...], generator: torch.Generator | None, device, x_init: torch.Tensor | None) -> torch.Tensor:
    """x_T: the given x_init (checked against `shape`), or fresh N(0, I) noise from the generator."""
    if x_init is None:
        return randn(shape, generator, device)
    if tuple(x_init.shape) != tuple(shape):
        raise ValueError(f"x_init must have shape {tuple(shape)}, got {tuple(x_init.shape)}")
    return x_init.to(device)


Step = Callable[[torch.Tensor, int, int], StepOutput]


def reverse_loop(
    x: torch.Tensor,
    timesteps: list[int],
    step: Step,
    *,
    capture_every: int | None = None,
    progress: bool = True,
    desc: str = "sampling",
    on_step: Callable[[], None] | None = None,
) -> SampleOutput:
    """The loop every sampler of the course shares: for each timestep t of `timesteps`
    (decreasing), with t_prev the next one (-1 after the last: clean data),

        x <- step(x, t, t_prev).prev_sample

    Every CHECK_EVERY steps, and at the end, x is checked for NaN/inf.

    Args:
        x: (B, ...) the start, x_T.
        step: step(x_t, t, t_prev) -> StepOutput; it calls the model (as often as it needs).
        capture_every: record every this many steps (and the last one) in the output. For recorded
            step i: timesteps[i] is the step's code index k (the paper's t = k + 1); trajectory[i] is
            the step's OUTPUT, x at t_prev; pred_x0_trajectory[i] is the estimate of x_0 made from the
            step's INPUT, x_t. So the input of step i is trajectory[i - 1] when capture_every=1
            (x_T for i = 0).
        progress: show a progress bar (with the label `desc`).
        on_step: called after every step (e.g. to advance one progress bar over many batches).
    """
    out = SampleOutput(samples=x)
    for i, t in enumerate(tqdm(timesteps, desc=desc, disable=not progress, leave=False)):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        result = step(x, t, t_prev)
        x = result.prev_sample
        if (i + 1) % CHECK_EVERY == 0 or t_prev < 0:
            check_finite("x_t", x)
        if capture_every and (i % capture_every == 0 or t_prev < 0):
            out.record(t, x, result.pred_x0)
        if on_step is not None:
            on_step()
    out.samples = x
    return out


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
    """Draw samples with all T DDPM steps (Ho et al. 2020, Algorithm 2), eq. (2.6).

    Args:
        model: eps_theta(x_t, t).
        shape: (B, ...) of the samples.
        schedule: the schedule the model was trained with.
        generator: a seeded CPU generator; all noise comes from it (same seed, same samples
            on every device).
        capture_every, progress, on_step: as in `reverse_loop`.
        x_init: start from this x_T (of `shape`) instead of drawing it from the generator.
    """
    schedule = schedule.to(device)
    x = initial_noise(shape, generator, device, x_init)  # x_T ~ N(0, I)

    def step(x_t: torch.Tensor, t: int, t_prev: int) -> StepOutput:
        eps = predict_noise(model, x_t, t)
        noise = randn(shape, generator, device) if t > 0 else None
        return ddpm_step(x_t, t, eps, schedule, noise=noise, variance=variance, clip_x0=clip_x0, validate=False)

    timesteps = list(reversed(range(schedule.num_train_timesteps)))
    return reverse_loop(x, timesteps, step, capture_every=capture_every, progress=progress, desc="DDPM", on_step=on_step)


@torch.no_grad()
def ddim_sample(
    model: NoisePredictor,
    shape: tuple[int, ...],
    schedule: NoiseSchedule,
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    spacing: str = DEFAULT_SPACING,
    clip_x0: float | None = None,
    capture_every: int | None = None,
    progress: bool = True,
    x_init: torch.Tensor | None = None,
    on_step: Callable[[], None] | None = None,
) -> SampleOutput:
    """Draw samples with `steps` DDIM steps (Song et al. 2021), eq. (2.7).

    Args: as `ddpm_sample`, plus
        steps: how many model evaluations (1..T).
        eta: 0 for deterministic DDIM, up to 1 (ancestral sampling on the strided timesteps).
        spacing: "trailing" or "leading" (see `ddim_timesteps`).
    """
    schedule = schedule.to(device)
    x = initial_noise(shape, generator, device, x_init)  # x_T ~ N(0, I)

    def step(x_t: torch.Tensor, t: int, t_prev: int) -> StepOutput:
        eps = predict_noise(model, x_t, t)
        noise = randn(shape, generator, device) if eta > 0 and t_prev >= 0 else None
        return ddim_step(x_t, t, t_prev, eps, schedule, eta=eta, noise=noise, clip_x0=clip_x0, validate=False)

    timesteps = ddim_timesteps(schedule.num_train_timesteps, steps, spacing)
    return reverse_loop(x, timesteps, step, capture_every=capture_every, progress=progress, desc=f"DDIM {steps}",
                        on_step=on_step)


class SamplingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `sample`; `samples` holds the whole batches finished before it."""

    def __init__(self, samples: torch.Tensor):
        super().__init__(f"interrupted after {len(samples)} samples")
        self.samples = samples


def check_request(n: int, labels: torch.Tensor | None, guidance: float, batch_size: int) -> None:
    """The checks every sampling entry point makes (`sample`, `flow.sample_flow`): one label per image,
    guidance only with labels, a positive batch size."""
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels is None and guidance != 1.0:
        raise ValueError("guidance needs labels: pass the digits to draw (e.g. --label 7 or --all-labels)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


@torch.no_grad()
def sample(
    model,
    schedule: NoiseSchedule,
    n: int,
    sampler: str = "ddim",
    steps: int | None = None,
    *,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    x_init: torch.Tensor | None = None,
    spacing: str = DEFAULT_SPACING,
    clip_x0: float | None = 1.0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """n samples (n, C, H, W) from a (class-conditional) UNet, in batches, with one progress
    bar; the same seed gives the same samples on every device and for every batch size
    (except "ddpm" and "ancestral", whose later noise depends on the batches).

    Args:
        model: a diffedu UNet (its config gives the sample shape, its null_class guidance).
        sampler: one of SAMPLERS: "ddim", "ancestral", "ddpm" or "heun".
        steps: sampler steps (default: 50; T for "ddpm", which takes all of them).
        labels: (n,) digits to draw, or None for unconditional samples (a conditional model
            is then given its null class: any digit).
        guidance: classifier-free guidance scale w, eq. (3.3) (needs labels).
        seed: seeds one CPU generator for x_T and all later noise.
        x_init: (n, C, H, W) starting noise x_T instead of drawing it from `seed` (DDIM and Heun
            are then a deterministic function of x_init: chapter 06's path length uses this).
        spacing: which timesteps are visited, see `ddim_timesteps`.
        clip_x0: clamp the predicted x_0 at every step, and the result, to +-clip_x0: 1.0 for
            pixels in [-1, 1]; latent models pass their own bound (zoo.mnist_ldm.LATENT_CLIP).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    num_train_timesteps = schedule.num_train_timesteps
    if steps is None:
        steps = num_train_timesteps if sampler == "ddpm" else 50
    if sampler == "ddpm" and steps != num_train_timesteps:
        raise ValueError(f"ddpm takes all {num_train_timesteps} steps; for ancestral sampling on {steps} strided "
                         "steps use sampler='ancestral'")
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in 1..{num_train_timesteps}, got {steps}")
    check_request(n, labels, guidance, batch_size)
    from diffedu.sde import probability_flow_sample  # sde.py builds on this module: import it here, not above

    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    shape = (model.config.image_channels, model.config.image_size, model.config.image_size)
    x_init = initial_noise((n, *shape), generator, "cpu", x_init)  # every x_T in one draw: the batch size cannot change them
    bar = tqdm(total=steps * math.ceil(n / batch_size), desc=f"sampling {n} images ({sampler}, {steps} steps)",
               unit="step", disable=not progress)
    chunks = []  # finished batches, on the CPU
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            if labels is not None:  # these digits, with guidance w
                predictor = guided_noise_predictor(model, labels[start: start + count].to(device), guidance)
            elif model.null_class is not None:  # a conditional model asked for "any digit": the null class
                predictor = guided_noise_predictor(model, torch.full((count,), model.null_class, device=device), 1.0)
            else:  # an unconditional model
                predictor = model
            batch_shape, batch_init = (count, *shape), x_init[start: start + count]
            common = dict(generator=generator, device=device, clip_x0=clip_x0, progress=False, x_init=batch_init,
                          on_step=bar.update)
            if sampler in ("ddim", "ancestral"):
                eta = 1.0 if sampler == "ancestral" else 0.0
                out = ddim_sample(predictor, batch_shape, schedule, steps, eta, spacing=spacing, **common)
            elif sampler == "heun":
                out = probability_flow_sample(predictor, batch_shape, schedule, steps, "heun", spacing=spacing, **common)
            else:
                out = ddpm_sample(predictor, batch_shape, schedule, **common)
            samples = out.samples if clip_x0 is None else out.samples.clamp(-clip_x0, clip_x0)
            chunks.append(samples.cpu())
    except KeyboardInterrupt:
        raise SamplingInterrupted(torch.cat(chunks) if chunks else x_init[:0]) from None
    finally:
        bar.close()
    return torch.cat(chunks)
