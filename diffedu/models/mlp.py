"""A small MLP noise predictor eps_theta(x_t, t) for 2-D toy data (chapter 02)."""

from __future__ import annotations

import torch
from torch import nn

from diffedu.models.time_embedding import timestep_embedding


class ToyMLP(nn.Module):
    """eps_theta(x_t, t) for points in `data_dim` dimensions: the timestep's sinusoidal
    embedding is concatenated with x_t and passed through `depth` SiLU layers.

    Args:
        data_dim: size of a data point (2 for the toy mixture).
        hidden: width of the hidden layers.
        depth: number of hidden layers.
        time_dim: size of the timestep embedding.
    """

    def __init__(self, data_dim: int = 2, hidden: int = 128, depth: int = 3, time_dim: int = 32):
        super().__init__()
        self.data_dim, self.time_dim = data_dim, time_dim
        layers: list[nn.Module] = []
        width = data_dim + time_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, data_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t: (B, data_dim), t: (B,) long -> predicted noise (B, data_dim)."""
        if x_t.ndim != 2 or x_t.shape[1] != self.data_dim:
            raise ValueError(f"x_t must have shape (B, {self.data_dim}), got {tuple(x_t.shape)}")
        t_emb = timestep_embedding(t.expand(x_t.shape[0]), self.time_dim)  # (B, time_dim)
        return self.net(torch.cat([x_t, t_emb.to(x_t.dtype)], dim=1))
