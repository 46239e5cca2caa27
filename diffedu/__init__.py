"""diffedu: the helper library of a course on diffusion models.

One concept a module:
    device      device choice, seeding, CPU-drawn noise, mixed precision
    fast        DIFFEDU_FAST=1 shrinks the notebooks for tests
    schedules   beta/alpha/alpha_bar/SNR and q_sample (chapter 01)
    samplers    DDPM and DDIM steps and loops (chapter 02)
    losses      the noise-prediction objective (chapter 02)
    toy         a 2-D Gaussian mixture with exact scores (chapter 02)
    data        MNIST from the course's offline copy
    models      neural networks
    plotting    grids, curves, animations; widgets: interactive explorers
    exercises   auto-checked exercises
    report      a one-screen environment report
"""

from diffedu.data import load_mnist
from diffedu.device import autocast, get_device, randn, seed_everything
from diffedu.fast import fast_or_full, is_fast_mode
from diffedu.report import environment_report
from diffedu.samplers import ddim_sample, ddim_step, ddpm_sample, ddpm_step, predict_x0_from_eps, q_posterior
from diffedu.schedules import NoiseSchedule, make_schedule, q_sample

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
    "seed_everything",
]
