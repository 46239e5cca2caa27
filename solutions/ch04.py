"""Reference solutions of chapter 04's exercises (try first!). Checked by tests/test_exercises_ch04.py."""

import math

import torch


def solution_reparameterize(mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return mean + torch.exp(0.5 * log_var) * eps  # eq. (4.2): the standard deviation is exp(log_var / 2)


def solution_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).flatten(1).sum(1)  # eq. (4.3), (B,)


SOLUTION_4_3 = 10 * math.log10(1 / 0.004)  # eq. (4.6), about 23.98 dB
