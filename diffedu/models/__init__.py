"""Neural networks of the course, one readable file each:

    unet            the noise predictor of chapters 03 and 04
    vae             the VAE of chapter 04
    mlp             the toy noise predictor of chapter 02
    classifier      the MNIST classifier behind accuracy and FID
    time_embedding  sinusoidal timestep embeddings
    checkpoints     saving and loading weights with their model card
"""

from torch import nn

from diffedu.models.mlp import ToyMLP
from diffedu.models.time_embedding import timestep_embedding


def count_parameters(model: nn.Module) -> int:
    """The number of numbers a model learns."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["ToyMLP", "count_parameters", "timestep_embedding"]
