"""LoRA (Hu et al. 2021), written by hand: a frozen linear layer W plus a trainable low-rank update,

    h = W x + (alpha / r) B A x,      A: (r, d_in), B: (d_out, r), r << min(d_in, d_out)

Only A and B train: r (d_in + d_out) numbers instead of d_in d_out. B starts at zero, so before
training the layer is exactly W, and the first gradient steps start from the pretrained model.
alpha / r scales the update, so that changing r does not change how far a learning rate moves it.
Merging ("fusing") adds (alpha / r) B A into W once: the same output, no extra cost per call.

This is the layer PEFT's `LoraConfig(r=..., lora_alpha=...)` puts around a model's linear layers
(`unet.add_adapter(...)` in diffusers); tests/test_lora.py checks that the two agree.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """`base` (frozen) plus the low-rank update (alpha / rank) B A; A starts random, B at zero."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if not 1 <= rank <= min(base.in_features, base.out_features):
            raise ValueError(f"rank must be in 1..{min(base.in_features, base.out_features)} for a "
                             f"{base.in_features} -> {base.out_features} layer, got {rank}")
        self.base = base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))  # (r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))  # (d_out, r): zero, so the layer starts as W
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and PEFT) initialise weights
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_out): W x + b + (alpha / r) B (A x)."""
        return self.base(x) + self.scaling * (x @ self.lora_A.T) @ self.lora_B.T

    def merged_weight(self) -> torch.Tensor:
        """W + (alpha / r) B A, (d_out, d_in): the weight of one plain layer that computes the same."""
        return self.base.weight + self.scaling * self.lora_B @ self.lora_A

    def trainable_fraction(self) -> float:
        """Trainable numbers over the base layer's weight count: r (d_in + d_out) / (d_in d_out)."""
        return (self.lora_A.numel() + self.lora_B.numel()) / self.base.weight.numel()
