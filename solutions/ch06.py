"""Reference solutions of chapter 06's exercises (try first!). Checked by tests/test_exercises_ch06.py."""

import math

import torch


def solution_frechet_1d(mu1: float, std1: float, mu2: float, std2: float) -> float:
    # eq. (6.1) in 1-D: Sigma = std^2 and the matrix square root of Sigma1 Sigma2 is std1 std2
    return (mu1 - mu2) ** 2 + std1**2 + std2**2 - 2 * math.sqrt(std1**2 * std2**2)


def solution_inception_score(probs: torch.Tensor) -> float:
    marginal = probs.mean(0, keepdim=True)  # p(y), (1, K)
    kl = (probs * (probs.clamp(min=1e-12).log() - marginal.log())).sum(1)  # (N,) KL(p(y|x) || p(y))
    return kl.mean().exp().item()  # eq. (6.4)


def solution_mmd2_unbiased(a: torch.Tensor, b: torch.Tensor, kernel) -> float:
    n, m = a.shape[0], b.shape[0]
    k_aa, k_bb = kernel(a, a), kernel(b, b)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))  # pairs i != j only
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return (within_a + within_b - 2 * kernel(a, b).mean()).item()  # eq. (6.3)
