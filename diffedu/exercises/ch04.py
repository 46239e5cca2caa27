"""Exercises of chapter 04 (the VAE and latent diffusion). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import functools
import math

import torch
from torch.distributions import Normal, kl_divergence

from diffedu.exercises import (
    ExerciseError, exercise, expect_close, expect_number, expect_tensor, reject_known_mistakes, require_answer,
)
from diffedu.metrics import psnr
from diffedu.models.vae import kl_to_standard_normal


KL_FORMULA = ("1/2 * sum over coordinates of (log_var_p - log_var_q + (exp(log_var_q) + (mean_q - mean_p)^2) / exp(log_var_p) - 1)")


def _gaussian_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    mean_q, log_var_q, mean_p, log_var_p = torch.randn(4, 3, 4, 7, 7, generator=gen).unbind(0)  # each (3, 4, 7, 7)
    return mean_q, log_var_q - 1.0, mean_p, 0.5 * log_var_p


def _kl_terms(mean_q, log_var_q, mean_p, log_var_p) -> torch.Tensor:
    """The per-coordinate KL(N(mean_q, e^log_var_q) || N(mean_p, e^log_var_p)), (B, 4, 7, 7), from torch.distributions."""
    q = Normal(mean_q.double(), (0.5 * log_var_q.double()).exp())
    p = Normal(mean_p.double(), (0.5 * log_var_p.double()).exp())
    return kl_divergence(q, p)


@exercise("4.1")
def check_kl_gaussians(kl_gaussians) -> None:
    """Exercise 4.1: KL between two diagonal Gaussians, per sample (the general case of eq. (4.3))."""
    mean_q, log_var_q, mean_p, log_var_p = _gaussian_inputs()
    result = expect_tensor(kl_gaussians(mean_q.clone(), log_var_q.clone(), mean_p.clone(), log_var_p.clone()), (3,),
                           "the KL per sample (one number per image, shape (B,))")
    expected = _kl_terms(mean_q, log_var_q, mean_p, log_var_p).flatten(1).sum(1)  # (3,)
    if torch.allclose(result.double(), expected, rtol=1e-4):
        zero = kl_gaussians(mean_q, log_var_q, mean_q.clone(), log_var_q.clone())
        expect_close(expect_tensor(zero, (3,), "the KL per sample"), torch.zeros(3), "the KL of a Gaussian to itself must be 0",
                     atol=1e-4)
        return
    swapped = _kl_terms(mean_p, log_var_p, mean_q, log_var_q).flatten(1).sum(1)
    mistakes = [
        (swapped, "you computed KL(p || q): the KL is not symmetric, and the expectation is over q, the first argument"),
        (2 * expected, "missing the factor 1/2 in front of the sum"),
        (expected / mean_q[0].numel(), "sum over the latent coordinates (the KL of independent coordinates adds up), don't average"),
        (0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mean_q - mean_p) ** 2) - 1).flatten(1).sum(1),
         "the squared distance between the means and q's variance are both measured in units of p's variance"),
        (0.5 * (log_var_p - log_var_q + (log_var_q.exp() + (mean_q - mean_p) ** 2) / log_var_p.exp()).flatten(1).sum(1),
         "almost: a Gaussian against itself must give 0, and yours gives 1/2 per coordinate"),
        (kl_to_standard_normal(mean_q, log_var_q), "that is (4.3), the KL to N(0, I): here p has its own mean and variance"),
    ]
    reject_known_mistakes(result, mistakes, rtol=1e-4, atol=1e-4)
    expect_close(result, expected, "start from E_q[log q(z) - log p(z)] for one coordinate, as in the line above (4.3), "
                 "with p = N(mean_p, exp(log_var_p)); then sum over coordinates", rtol=1e-4, formula=KL_FORMULA)


@functools.lru_cache(maxsize=1)
def midpoint_fractions(num_pairs: int = 300) -> tuple[float, float, float, float]:
    """Over the test-digit pairs (2i, 2i + 1), i < num_pairs, whose labels differ: the fraction of midpoints the
    classifier labels as one of the pair's two digits, (latent, pixel), and the fraction it labels as the first
    digit only, (latent, pixel). Latent midpoints decode the mean of the two posterior means, with the shipped VAE."""
    from diffedu import latents, zoo
    from diffedu.course.data import load_mnist
    from diffedu.metrics import load_classifier, predict_labels

    vae, classifier, test_set = zoo.load("mnist-vae"), load_classifier(), load_mnist("test")
    first, second = test_set.images[0: 2 * num_pairs: 2], test_set.images[1: 2 * num_pairs: 2]  # (num_pairs, 1, 28, 28)
    label_a, label_b = test_set.labels[0: 2 * num_pairs: 2], test_set.labels[1: 2 * num_pairs: 2]
    keep = label_a != label_b
    first, second, label_a, label_b = first[keep], second[keep], label_a[keep], label_b[keep]
    mean_a, mean_b = latents.encode(vae, first)[0], latents.encode(vae, second)[0]
    fractions = []
    for midpoints in (latents.decode(vae, (mean_a + mean_b) / 2), (first + second) / 2):
        seen = predict_labels(classifier, midpoints)
        fractions.append((((seen == label_a) | (seen == label_b)).float().mean().item(), (seen == label_a).float().mean().item()))
    (latent, latent_first), (pixel, pixel_first) = fractions
    return latent, pixel, latent_first, pixel_first


@exercise("4.2")
def check_midpoint_fractions(answer) -> None:
    """Exercise 4.2: (latent, pixel) fractions of midpoints that the classifier reads as one of the two digits."""
    require_answer(answer)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise ExerciseError("answer with two numbers, (latent_fraction, pixel_fraction)")
    latent = expect_number(answer[0], "the fraction for the latent midpoints")
    pixel = expect_number(answer[1], "the fraction for the pixel midpoints")
    expected_latent, expected_pixel, latent_first, pixel_first = midpoint_fractions()
    tolerance = 0.02  # the pairs are fixed, so only rounding differs
    if abs(latent - expected_latent) <= tolerance and abs(pixel - expected_pixel) <= tolerance:
        return
    if abs(latent - expected_pixel) <= tolerance and abs(pixel - expected_latent) <= tolerance:
        raise ExerciseError("the two numbers are swapped: the latent midpoints first, then the pixel cross-fades")
    if max(latent, pixel) > 1:
        raise ExerciseError("give fractions between 0 and 1, not percentages")
    if abs(latent - latent_first) <= tolerance or abs(pixel - pixel_first) <= tolerance:
        raise ExerciseError("count a midpoint when the classifier sees either of the pair's two digits, not only the first")
    wrong = "latent" if abs(latent - expected_latent) > tolerance else "pixel"
    raise ExerciseError(f"the {wrong} fraction is off: use the test-digit pairs (2i, 2i + 1) for i < 300 whose labels differ; "
                        "a latent midpoint decodes (mean_a + mean_b) / 2 of the posterior means, a pixel midpoint is "
                        "(x_a + x_b) / 2; the classifier's digit must be label_a or label_b")


def _psnr_of_mse(mse: float) -> float:
    """The library's PSNR, eq. (4.6), of a reconstruction whose error on [0, 1] is the same at every pixel."""
    image = torch.zeros(1, 1, 4, 4)  # in [-1, 1], as diffedu.metrics.psnr expects
    off = image + 2 * math.sqrt(mse)  # [-1, 1] is twice as wide as [0, 1]
    return psnr(image, off).item()


@exercise("4.3")
def check_psnr_answer(answer) -> None:
    """Exercise 4.3: the PSNR of a reconstruction with mean squared error 0.004 on [0, 1]."""
    answer = expect_number(answer, "a number of dB")
    expected = _psnr_of_mse(0.004)
    if abs(answer - expected) <= 0.1:  # rounded by hand is fine
        return
    if abs(answer - 2 * expected) < 0.1:
        raise ExerciseError("PSNR is 10 log10(peak^2 / MSE): 10, not 20, when you start from the MSE (20 is for the RMSE)")
    if abs(answer - expected / 10) < 0.01:
        raise ExerciseError("decibels: multiply log10(1 / MSE) by 10")
    if abs(answer + expected) < 0.1:
        raise ExerciseError("the sign: PSNR is 10 log10(1 / MSE), positive for an error smaller than the peak")
    if abs(answer - _psnr_of_mse(0.004 / 4)) < 0.1:
        raise ExerciseError("that uses a peak of 2, as for images in [-1, 1]; this image and its MSE are on [0, 1], "
                            "so the peak is 1")
    raise ExerciseError("eq. (4.6): PSNR = 10 log10(1 / MSE) for images in [0, 1]")
