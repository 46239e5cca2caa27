"""Neural networks of the course, one readable file each."""

from diffedu.models.mlp import ToyMLP
from diffedu.models.time_embedding import timestep_embedding

__all__ = ["ToyMLP", "timestep_embedding"]
