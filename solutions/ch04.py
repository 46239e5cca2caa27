"""Reference solutions of chapter 04's exercises (try first!). Checked by tests/test_exercises_ch04.py."""

import math

import torch

from diffedu import latents
from diffedu.metrics import predict_labels


def solution_kl_gaussians(mean_q: torch.Tensor, log_var_q: torch.Tensor, mean_p: torch.Tensor,
                          log_var_p: torch.Tensor) -> torch.Tensor:
    # per coordinate: E_q[log q - log p] = 1/2 (log var_p - log var_q + (var_q + (mean_q - mean_p)^2) / var_p - 1)
    var_ratio = torch.exp(log_var_q - log_var_p)  # var_q / var_p
    distance = (mean_q - mean_p).square() / log_var_p.exp()  # squared distance of the means, in units of var_p
    return 0.5 * (var_ratio + distance - 1 - (log_var_q - log_var_p)).flatten(1).sum(1)  # (B,): coordinates add up


def solution_midpoint_fractions(vae, classifier, images: torch.Tensor, labels: torch.Tensor, num_pairs: int = 300) -> tuple:
    first, second = images[0: 2 * num_pairs: 2], images[1: 2 * num_pairs: 2]  # test digits 2i and 2i + 1
    label_a, label_b = labels[0: 2 * num_pairs: 2], labels[1: 2 * num_pairs: 2]
    differ = label_a != label_b
    first, second, label_a, label_b = first[differ], second[differ], label_a[differ], label_b[differ]
    mean_a, mean_b = latents.encode(vae, first)[0], latents.encode(vae, second)[0]  # posterior means, (N, 4, 7, 7)
    fractions = []
    for midpoints in (latents.decode(vae, 0.5 * (mean_a + mean_b)), 0.5 * (first + second)):
        seen = predict_labels(classifier, midpoints)  # (N,)
        fractions.append(((seen == label_a) | (seen == label_b)).float().mean().item())  # one of the pair's two digits
    return tuple(fractions)  # (latent, pixel)


SOLUTION_4_3 = 10 * math.log10(1 / 0.004)  # eq. (4.6), about 23.98 dB
