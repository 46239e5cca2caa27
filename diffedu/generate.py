"""One way to draw images from any model of the course (chapters 02, 07 and 08): `generate`.

    images = generate(unet, 16, "ddim", 20, schedule=schedule, labels=digits, guidance=1.5)  # a noise predictor
    images = generate(flow_unet, 16, "euler", 20, labels=digits, guidance=1.25)              # a velocity model

`generate` is the machinery around the math: it batches, seeds, wraps the model for guidance,
shows one progress bar and turns Ctrl-C into `SamplingInterrupted` with the batches finished so far.
The math is in the generators of steps it drives (samplers.ddim_states, sde.probability_flow_states,
flow.flow_states, ...), which import nothing from here.

SAMPLERS is the one registry of samplers: name -> Sampler. The command line's --sampler choices and
help, each named model's samplers (zoo) and `model_calls` read it; adding a sampler is one entry.
It names each generator as "module:function" instead of importing it, so that `python -m diffedu
--help` can list the samplers without loading PyTorch (about 2 s); this module imports PyTorch
only inside `generate`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampler:
    """One entry of the registry.

    prediction: what the model must predict: "noise" (eps_theta(x_t, t), chapters 02 and 07),
        "velocity" (v_theta(x_t, t), chapter 08), "consistency" (F_theta of a consistency function, eq. 8.14)
        or "average-velocity" (MeanFlow's u_theta(z_t, r, t), eq. 8.18).
    states: "module:function" of the generator of steps. A "noise" one is called as
        f(model, x_T, schedule, timesteps, clip_x0=..., **options), plus generator=... if `random`;
        a "velocity" one as f(model, x_T, times, clip_x0=..., **options).
    about: one line for --help.
    calls_per_step, fewer_calls: model calls per image are calls_per_step * steps - fewer_calls
        (without guidance, which doubles the batch, not the calls).
    options: extra keyword arguments of the generator (eta, method, ...).
    random: draws noise at every step (from the generator seeded by `seed`).
    fresh_noise: takes new noise between steps, drawn up front for all n images from `seed` (so, unlike
        `random`, the batch size cannot change the samples); passed as noise=(steps - 1, B, C, H, W).
    all_steps: takes all T steps of the schedule (DDPM), not a chosen number.
    min_steps: the fewest steps it can take.
    """

    prediction: str
    states: str
    about: str
    calls_per_step: int = 1
    fewer_calls: int = 0
    options: dict = field(default_factory=dict)
    random: bool = False
    fresh_noise: bool = False
    all_steps: bool = False
    min_steps: int = 1

    def model_calls(self, steps: int) -> int:
        return self.calls_per_step * steps - self.fewer_calls

    def step_generator(self) -> Callable:
        module, name = self.states.split(":")
        return getattr(importlib.import_module(module), name)


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler("noise", "diffedu.samplers:ddim_states", "DDIM, eq. (2.7) with eta = 0: deterministic, one model call a step",
                    options={"eta": 0.0}),
    "ancestral": Sampler("noise", "diffedu.samplers:ddim_states", "DDPM's noisy posterior step (2.6) between strided "
                         "timesteps: DDIM (2.7) with eta = 1, one model call a step", options={"eta": 1.0}, random=True),
    "ddpm": Sampler("noise", "diffedu.samplers:ddpm_states", "DDPM, all T steps of eq. (2.6) (Ho et al. 2020, Algorithm 2)",
                    random=True, all_steps=True),
    "pf-heun": Sampler("noise", "diffedu.sde:probability_flow_states", "Heun's method (7.8) on the probability-flow ODE, "
                       "with Euler first and last steps: 2 x steps - 2 model calls", calls_per_step=2, fewer_calls=2,
                       options={"method": "heun"}, min_steps=2),
    "euler": Sampler("velocity", "diffedu.flow:flow_states", "Euler's method on the flow ODE, eq. (8.5): one model call a step",
                     options={"method": "euler"}),
    "heun": Sampler("velocity", "diffedu.flow:flow_states", "Heun's method on the flow ODE, eq. (8.9): 2 model calls a step",
                    calls_per_step=2, options={"method": "heun"}),
    "consistency": Sampler("consistency", "diffedu.consistency:consistency_states", "multistep consistency sampling, "
                           "eq. (8.17): one model call a step, fresh noise between steps", fresh_noise=True),
    "meanflow": Sampler("average-velocity", "diffedu.meanflow:meanflow_states", "MeanFlow's jump (8.19) over each "
                        "interval of the grid: one model call a step"),
}


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def samplers_for(prediction: str) -> list[str]:
    """The samplers a model that predicts `prediction` ("noise" or "velocity") can use, in registry order."""
    return [name for name, sampler in SAMPLERS.items() if sampler.prediction == prediction]


def model_calls(name: str, steps: int) -> int:
    """Model evaluations per image of `steps` steps of sampler `name` (without guidance)."""
    return get_sampler(name).model_calls(steps)


def check_steps(name: str, steps: int | None, num_train_timesteps: int | None = None) -> int:
    """The number of steps to take, checked: None means T for a sampler that takes all steps (DDPM)
    and an error otherwise; a number must lie in min_steps..T (T: the schedule's, for noise predictors)."""
    sampler = get_sampler(name)
    if sampler.all_steps:
        if steps is not None and steps != num_train_timesteps:
            raise ValueError(f"{name} takes all {num_train_timesteps or 'T'} steps of the schedule; for {steps} strided "
                             "steps use 'ancestral'")
        return num_train_timesteps
    if steps is None:
        raise ValueError(f"{name} needs a number of steps")
    highest = num_train_timesteps if sampler.prediction == "noise" else None
    if steps < sampler.min_steps or (highest is not None and steps > highest):
        upper = f"..{highest}" if highest is not None else " or more"
        raise ValueError(f"{name} takes {sampler.min_steps}{upper} steps, got {steps}")
    return steps


class SamplingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `generate`; `samples` holds the whole batches finished before it."""

    def __init__(self, samples):
        super().__init__(f"interrupted after {len(samples)} samples")
        self.samples = samples


def generate(model, n: int, sampler: str = "ddim", steps: int | None = None, *, schedule=None, labels=None,
             guidance: float = 1.0, seed: int = 0, x_init=None, spacing: str = "trailing", shift: float = 1.0,
             clip_x0: float | None = 1.0, mixed_precision: bool = False, batch_size: int = 500, device=None,
             progress: bool = True):
    """n samples (n, C, H, W) from a course UNet, in batches, with one progress bar. The starting noise
    of all n is drawn at once from `seed` on the CPU, so for the deterministic samplers the samples do
    not depend on the batch size or the device ("ddpm" and "ancestral" draw later noise batch by batch).

    Args:
        model: a diffedu UNet (its config gives the sample shape, its null_class guidance) that predicts
            what the sampler expects (SAMPLERS[sampler].prediction).
        sampler: a name in SAMPLERS; steps: how many (default: T for "ddpm"; else required).
        schedule: the noise schedule a noise predictor was trained with (not used by velocity models).
        labels: (n,) digits to draw, or None for "any digit" (a conditional model's null class).
        guidance: classifier-free guidance w, eq. (3.3) (needs labels; it works on any prediction).
        seed: seeds the one CPU generator of x_T and of all later noise.
        x_init: (n, C, H, W) starting noise instead of drawing it from `seed`.
        spacing: which timesteps a noise predictor visits: "trailing", "leading" or "karras".
        shift: moves a flow's time grid towards noise, eq. (8.10).
        clip_x0: the data range: each step's estimate of x_0, and the result, are clamped to +-clip_x0
            (1.0 for pixels in [-1, 1]; latent models pass their own bound); None clamps nothing.
        mixed_precision: run the model under autocast on a GPU (faster; then the same seed gives the same
            noise on every device but not exactly the same picture). No effect on a CPU.
    """
    import torch

    from diffedu.course.device import randn
    from diffedu.course.progress import tqdm
    from diffedu.course.trajectory import run_steps
    from diffedu.flow import flow_times
    from diffedu.sde import ode_timesteps

    chosen = get_sampler(sampler)
    if chosen.prediction == "noise" and schedule is None:
        raise ValueError(f"{sampler} samples a noise predictor: pass the schedule it was trained with (schedule=...)")
    steps = check_steps(sampler, steps, schedule.num_train_timesteps if schedule is not None else None)
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels is None and guidance != 1.0:
        raise ValueError("guidance needs labels: pass the digits to draw (e.g. --label 7 or --all-labels)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    shape = (n, model.config.image_channels, model.config.image_size, model.config.image_size)
    if x_init is None:
        x_init = randn(shape, generator)  # every x_T in one draw: the batch size cannot change them
    elif tuple(x_init.shape) != shape:
        raise ValueError(f"x_init must have shape {shape}, got {tuple(x_init.shape)}")
    later_noise = randn((steps - 1, *shape), generator) if chosen.fresh_noise else None  # also all n at once
    if chosen.prediction == "noise":
        schedule = schedule.to(device)
        grid = (schedule, list(reversed(range(steps))) if chosen.all_steps else ode_timesteps(schedule, steps, spacing))
    else:
        grid = (flow_times(steps, shift),)
    extra = dict(chosen.options, clip_x0=clip_x0) | ({"generator": generator} if chosen.random else {})
    states = chosen.step_generator()

    bar = tqdm(total=steps * math.ceil(n / batch_size), desc=f"sampling {n} images ({sampler}, {steps} steps)",
               unit="step", disable=not progress)
    chunks = []  # finished batches, on the CPU
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            batch_labels = labels[start: start + count] if labels is not None else None
            predictor = batch_predictor(model, batch_labels, count, guidance, mixed_precision, device)
            x = x_init[start: start + count].to(device)
            if later_noise is not None:
                extra["noise"] = later_noise[:, start: start + count]
            with torch.no_grad():
                run = run_steps(x, states(predictor, x, *grid, **extra), steps, progress=False, on_step=bar.update)
            samples = run.samples if clip_x0 is None else run.samples.clamp(-clip_x0, clip_x0)
            chunks.append(samples.cpu())
    except KeyboardInterrupt:
        raise SamplingInterrupted(torch.cat(chunks) if chunks else x_init[:0]) from None
    finally:
        bar.close()
    return torch.cat(chunks)


def batch_predictor(model, labels, count: int, guidance: float, mixed_precision: bool, device):
    """model(x, time_input) for one batch of `count`: guided towards `labels` (B,) with w = guidance; for
    labels None, a conditional model's null class ("any digit") or an unconditional model as it is."""
    import torch

    from diffedu.course.device import autocast
    from diffedu.guidance import guided_predictor

    predictor = model
    if labels is not None:  # these digits, with guidance w
        predictor = guided_predictor(model, labels.to(device), guidance)
    elif model.null_class is not None:  # a conditional model asked for "any digit": its null class
        predictor = guided_predictor(model, torch.full((count,), model.null_class, device=device), 1.0)
    if not mixed_precision:
        return predictor

    def predict_in_mixed_precision(x, time_input, **inputs):
        with autocast(device):
            return predictor(x, time_input, **inputs)

    return predict_in_mixed_precision
