"""diffedu: the helper library of a course on diffusion models.

The math, one chapter each (diffedu/*.py):
    schedules   beta/alpha/alpha_bar/SNR and q_sample                        chapter 01
    samplers    DDPM and DDIM steps, one shared loop, `sample`                chapter 02
    toy         a 2-D Gaussian mixture with exact scores                      chapter 02
    losses      the noise-prediction objective, Min-SNR, label dropout        chapters 02-03
    guidance    classifier-free guidance                                      chapter 03
    train       the resumable training loop                                   chapter 03
    latents     encode, decode and scale a VAE's latents                      chapter 04
    metrics     accuracy, FID, PSNR/SSIM, KID, precision/recall, ...          chapters 03, 06
    sde         scores, Langevin dynamics, the probability-flow ODE           chapter 07
    flow        flow matching: the straight path, its loss, conversions,      chapter 08
                Euler/Heun flow samplers, the timestep shift
    distill     progressive distillation of a flow (guidance included)        chapter 08

The models:
    models/     networks, one file each (unet, vae, classifier, mlp, time_embedding), and
                checkpoints (safetensors + model card)
    zoo/        the named models, one module each, and their registry (`python -m diffedu models`)
    sd/         Stable Diffusion parts: the mini pipeline, real model ids, memory savers (chapter 05);
                a LoRA layer written by hand, bold/slanted/outlined digits and their measures,
                LoRA / textual inversion / ControlNet training (finetune, chapter 09)
    __main__    the command line: models, train, sample, evaluate, publish

The course's infrastructure (diffedu/course/, diffedu/exercises/):
    course/     paths, fast mode, checks, colab, online, report, widgets, captions,
                device, data, plotting, progress
    exercises/  the auto-checked exercises
"""

from __future__ import annotations

import importlib

# The names below are imported on first use, so that `python -m diffedu --help` answers
# without loading PyTorch. `diffedu.q_sample` works as usual.
_EXPORTS = {
    "load_mnist": "diffedu.course.data", "sample": "diffedu.samplers",
    "autocast": "diffedu.course.device", "get_device": "diffedu.course.device", "randn": "diffedu.course.device",
    "seed_everything": "diffedu.course.device",
    "fast_or_full": "diffedu.course.fast", "is_fast_mode": "diffedu.course.fast",
    "environment_report": "diffedu.course.report",
    "ddim_sample": "diffedu.samplers", "ddim_step": "diffedu.samplers", "ddpm_sample": "diffedu.samplers",
    "ddpm_step": "diffedu.samplers", "predict_x0_from_eps": "diffedu.samplers", "q_posterior": "diffedu.samplers",
    "NoiseSchedule": "diffedu.schedules", "make_schedule": "diffedu.schedules", "q_sample": "diffedu.schedules",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffedu' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "NoiseSchedule",
    "autocast",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "environment_report",
    "fast_or_full",
    "get_device",
    "is_fast_mode",
    "load_mnist",
    "make_schedule",
    "predict_x0_from_eps",
    "q_posterior",
    "q_sample",
    "randn",
    "sample",
    "seed_everything",
]
