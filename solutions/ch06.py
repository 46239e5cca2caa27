"""Reference solutions of chapter 06's exercises (try first!). Checked by tests/test_exercises_ch06.py."""

import math

import numpy as np
import torch


def solution_frechet_1d(mu1: float, std1: float, mu2: float, std2: float) -> float:
    # eq. (6.1) in 1-D: Sigma = std^2 and the matrix square root of Sigma1 Sigma2 is std1 std2
    return (mu1 - mu2) ** 2 + std1**2 + std2**2 - 2 * math.sqrt(std1**2 * std2**2)


def solution_inception_score(probs: torch.Tensor) -> float:
    marginal = probs.mean(dim=0)  # p(y), (K,)
    kl = (probs * (probs.clamp(min=1e-12).log() - marginal.log())).sum(1)  # (N,) KL(p(y|x) || p(y)), broadcast over rows
    return kl.mean().exp().item()  # eq. (6.4)


def solution_mmd2_unbiased(a: torch.Tensor, b: torch.Tensor, kernel) -> float:
    n, m = a.shape[0], b.shape[0]
    k_aa = kernel(a, a)  # (n, n)
    k_bb = kernel(b, b)  # (m, m)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))  # pairs i != j only
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return (within_a + within_b - 2 * kernel(a, b).mean()).item()  # eq. (6.3)


def solution_fid_at_infinity(sizes: list[int], fids: list[float]) -> tuple[float, float]:
    c, fid_inf = np.polyfit(1 / np.asarray(sizes, dtype=float), np.asarray(fids, dtype=float), 1)  # (6.2): a line in 1/N
    return float(fid_inf), float(c)


def solution_mean_term_ratio(features: torch.Tensor, n: int = 100, pairs: int = 200, seed: int = 0) -> float:
    """Exercise 6.5, measured: mean ||mu_a - mu_b||^2 of two disjoint random sets of n, over 2 tr(Sigma) / n."""
    rng = np.random.default_rng(seed)
    features = features.to(torch.float64)
    squared = []
    for _ in range(pairs):
        pick = torch.from_numpy(rng.permutation(len(features))[: 2 * n])
        a, b = features[pick[:n]], features[pick[n:]]
        squared.append(((a.mean(0) - b.mean(0)) ** 2).sum())
    predicted = 2 * torch.cov(features.T).trace() / n
    return (torch.stack(squared).mean() / predicted).item()
