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

from __future__ import annotations

import importlib

# The names below are imported on first use, so that `python -m diffedu --help` answers
# without loading PyTorch. `diffedu.q_sample` works as usual.
_EXPORTS = {
    "load_mnist": "diffedu.data",
    "autocast": "diffedu.device", "get_device": "diffedu.device", "randn": "diffedu.device",
    "seed_everything": "diffedu.device",
    "fast_or_full": "diffedu.fast", "is_fast_mode": "diffedu.fast",
    "environment_report": "diffedu.report",
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
    "seed_everything",
]
