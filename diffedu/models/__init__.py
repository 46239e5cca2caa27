"""Neural networks of the course, one readable file each:

    unet            the noise predictor of chapters 03 and 04
    vae             the VAE of chapter 04
    mlp             the toy noise predictor of chapter 02
    classifier      the MNIST classifier behind accuracy and FID
    time_embedding  sinusoidal timestep embeddings
    checkpoints     saving and loading weights with their model card
"""

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from diffedu.course.device import seeded_global_rng
from diffedu.models.mlp import ToyMLP
from diffedu.models.time_embedding import timestep_embedding


def count_parameters(model: nn.Module) -> int:
    """The number of numbers a model learns."""
    return sum(p.numel() for p in model.parameters())


Built = TypeVar("Built")


def build_seeded(make: Callable[[], Built], seed: int = 0) -> Built:
    """make(), with the random initial weights drawn from `seed`: the same weights every time, and
    PyTorch's global random stream left as it was (torch.manual_seed in a builder would silently
    reset the learner's). Weights are initialised on the CPU, so only its stream is seeded."""
    with seeded_global_rng(seed, torch.device("cpu")):
        return make()


__all__ = ["ToyMLP", "build_seeded", "count_parameters", "timestep_embedding"]
