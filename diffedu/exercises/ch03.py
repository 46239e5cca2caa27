"""Exercises of chapter 03 (the UNet). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import functools

import torch
from torch import nn

from diffedu.exercises import (
    ExerciseError, exercise, expect_close, expect_number, expect_tensor, expect_whole_number, reject_known_mistakes,
    require_answer,
)
from diffedu.models import count_parameters
from diffedu.models.time_embedding import timestep_embedding

ROTATION_FORMULA = ("with a = k w_i and b = delta w_i: sin(a + b) = sin(a) cos(b) + cos(a) sin(b), "
                    "cos(a + b) = cos(a) cos(b) - sin(a) sin(b), where w_i = 10000^(-i / (dim/2))")


def _rotate(emb: torch.Tensor, delta: float, frequencies: torch.Tensor, sign_sin: int = 1, sign_cos: int = -1) -> torch.Tensor:
    """A candidate answer: each (sin, cos) pair of emb turned by delta * frequency, with the given signs."""
    half = emb.shape[1] // 2
    sin, cos = emb[:, :half].double(), emb[:, half:].double()  # (B, half) each
    turn = delta * frequencies  # (half,)
    return torch.cat([sin * turn.cos() + sign_sin * cos * turn.sin(), cos * turn.cos() + sign_cos * sin * turn.sin()], dim=1)


def _frequencies(half: int, denominator: float) -> torch.Tensor:
    return 10_000.0 ** (-torch.arange(half, dtype=torch.float64) / denominator)  # (half,)


@exercise("3.1")
def check_shift_embedding(shift_embedding) -> None:
    """Exercise 3.1: the embedding (3.1) of k + delta from the embedding of k alone (a rotation of each pair)."""
    k = torch.tensor([0, 1, 17, 400, 999])  # (B,) code timesteps
    dim, half = 16, 8
    for delta in (5, 120, -3):
        emb = timestep_embedding(k, dim)  # (5, 16)
        result = expect_tensor(shift_embedding(emb.clone(), delta), (5, dim), "the shifted embedding")
        expected = timestep_embedding(k + delta, dim)
        if torch.allclose(result.double(), expected.double(), atol=1e-4):
            continue
        frequencies = _frequencies(half, half)
        mistakes = [
            (timestep_embedding(k - delta, dim), "you turned each pair by -delta w_i: that is the embedding of k - delta"),
            (_rotate(emb, delta, frequencies, sign_sin=1, sign_cos=1),
             "the sines are right; check the sign in the cosine of a sum"),
            (_rotate(emb, delta, frequencies, sign_sin=-1, sign_cos=-1),
             "the cosines are right; check the sign in the sine of a sum"),
            (emb + timestep_embedding(torch.full_like(k, delta), dim),
             "embeddings do not add up: the angles k w_i and delta w_i add inside sin and cos"),
            (_rotate(emb, delta, _frequencies(half, dim)),
             "the rotation is right, the frequencies are not: eq. (3.1) divides i by d/2, not by d"),
        ]
        reject_known_mistakes(result, mistakes, opening=f"with delta = {delta}: ", atol=1e-4)
        expect_close(result, expected, f"with delta = {delta}: each pair (sin(k w_i), cos(k w_i)) is a point on a circle, "
                     "and moving k by delta turns it by the angle delta w_i", atol=1e-4, formula=ROTATION_FORMULA)


NEGATIVE_FORMULA = "eps_uncond + w (eps_cond - eps_uncond) - v (eps_negative - eps_uncond)"


@exercise("3.2")
def check_negative_guidance(negative_guided_eps) -> None:
    """Exercise 3.2: guidance towards class y and away from class y', (3.2)-(3.3) for ``q_t(x) q_t(y|x)^w q_t(y'|x)^-v``."""
    gen = torch.Generator().manual_seed(0)
    eps_uncond, eps_cond, eps_negative = torch.randn(3, 2, 1, 4, 4, generator=gen).unbind(0)  # each (2, 1, 4, 4)
    for w, v in ((2.0, 1.0), (3.0, 0.0), (0.0, 0.5)):
        output = negative_guided_eps(eps_uncond.clone(), eps_cond.clone(), eps_negative.clone(), w, v)
        result = expect_tensor(output, (2, 1, 4, 4), "the guided noise")
        expected = eps_uncond + w * (eps_cond - eps_uncond) - v * (eps_negative - eps_uncond)
        if torch.allclose(result, expected, atol=1e-5):
            continue
        mistakes = [
            (eps_uncond + w * (eps_cond - eps_uncond) + v * (eps_negative - eps_uncond),
             "the negative class's classifier enters with the exponent -v, so its term is subtracted"),
            (eps_uncond + w * (eps_cond - eps_uncond) - v * eps_negative,
             "Bayes' rule turns each classifier into a difference of two predictions, as in (3.3): the negative class's "
             "term needs its unconditional partner too"),
            (eps_negative + w * (eps_cond - eps_negative),
             "that is Stable Diffusion's negative prompt, which puts eps_negative in the place of eps_uncond: a different "
             "rule. Follow (3.2) with both classifiers"),
            (eps_uncond + w * (eps_cond - eps_uncond) - v * (eps_negative - eps_cond),
             "each classifier's term is measured from the unconditional prediction, the negative one's too"),
        ]
        reject_known_mistakes(result, mistakes, opening=f"with w = {w}, v = {v}: ")
        expect_close(result, expected, f"with w = {w}, v = {v}: take the gradient of log[q_t(x) q_t(y|x)^w q_t(y'|x)^(-v)] "
                     "as in (3.2), then multiply by -sqrt(1 - alpha_bar_t) as in (3.3). v = 0 must give (3.3)",
                     formula=NEGATIVE_FORMULA)


ERROR_TIMESTEPS = (100, 300, 500, 700, 900)  # paper timesteps t (code k = t - 1)


@functools.lru_cache(maxsize=1)
def measured_errors(num_digits: int = 1000, seed: int = 3) -> tuple[dict[int, float], dict[int, float]]:
    """The shipped mnist-unet's errors on the first test digits, with their labels, at ERROR_TIMESTEPS:
    (eps MSE, MSE of the x0 guess (2.4)), each t -> value."""
    from diffedu import zoo
    from diffedu.course.data import load_mnist
    from diffedu.samplers import predict_x0_from_eps
    from diffedu.schedules import q_sample

    model, schedule = zoo.load("mnist-unet")
    test_set = load_mnist("test")
    x0, labels = test_set.images[:num_digits], test_set.labels[:num_digits]  # (N, 1, 28, 28), (N,)
    generator = torch.Generator().manual_seed(seed)
    eps_errors, x0_errors = {}, {}
    for t in ERROR_TIMESTEPS:
        k = torch.full((num_digits,), t - 1)  # (N,) code timesteps
        noise = torch.randn(x0.shape, generator=generator)
        x_t = q_sample(x0, k, noise, schedule)
        with torch.no_grad():
            eps_hat = model(x_t, k, labels)
        x0_hat = predict_x0_from_eps(x_t, k, eps_hat, schedule)
        eps_errors[t] = (eps_hat - noise).square().mean().item()
        x0_errors[t] = (x0_hat - x0).square().mean().item()
    return eps_errors, x0_errors


def _close(values: dict[int, float], reference: dict[int, float], rtol: float) -> bool:
    return all(abs(values[t] - reference[t]) <= rtol * abs(reference[t]) for t in ERROR_TIMESTEPS)


@exercise("3.3")
def check_x0_errors(x0_errors) -> None:
    """Exercise 3.3: the measured MSE of the shipped model's guess x0_hat (2.4) at t = 100, 300, 500, 700, 900."""
    require_answer(x0_errors)
    if not isinstance(x0_errors, dict):
        raise ExerciseError(f"answer with a dict {{t: error}}, such as {{100: 0.01, 300: ...}}, got {type(x0_errors).__name__}")
    if sorted(x0_errors) != list(ERROR_TIMESTEPS):
        raise ExerciseError(f"the dict needs exactly the keys {list(ERROR_TIMESTEPS)} (paper timesteps t), "
                            f"got {sorted(x0_errors)}")
    values = {t: expect_number(x0_errors[t], f"the error at t = {t}") for t in ERROR_TIMESTEPS}
    eps_errors, expected = measured_errors()
    rtol = 0.25  # your own noise draws differ from the checker's: a quarter either way is allowed
    if _close(values, expected, rtol):
        return
    snr_times = {t: eps_errors[t] ** 2 / expected[t] for t in ERROR_TIMESTEPS}  # eps * SNR = eps^2 / x0-error
    if _close(values, eps_errors, rtol):
        raise ExerciseError("those are the errors of the noise prediction; the exercise asks for the error of the image "
                            "guess x0_hat that (2.4) makes from it", formula="(3.4): x0-error = eps-error / SNR(t)")
    if _close(values, snr_times, rtol):
        raise ExerciseError("(3.4) divides the noise error by SNR(t), it does not multiply it")
    if values[900] < values[100]:
        raise ExerciseError("your errors shrink as t grows: check which timestep each number belongs to (t = k + 1)")
    worst = max(ERROR_TIMESTEPS, key=lambda t: abs(values[t] - expected[t]) / expected[t])
    raise ExerciseError(f"at t = {worst} your error is {values[worst]:.3g}, the checker measures about {expected[worst]:.3g}: "
                        "noise the first 1000 test digits with (1.5), predict with their labels, guess x0 with (2.4), and "
                        "average the squared error over digits and pixels")


@exercise("3.4")
def check_conv_parameters(answer) -> None:
    """Exercise 3.4: parameters of nn.Conv2d(64, 128, kernel_size=3), with its bias."""
    answer = expect_whole_number(answer, "a number of parameters")
    conv = nn.Conv2d(64, 128, kernel_size=3, device="meta")  # shapes only: no memory, no draw from the global RNG
    if answer == count_parameters(conv):
        return
    weights = conv.weight.numel()
    if answer == weights:
        raise ExerciseError("almost: each of the 128 output channels also has a bias")
    if answer in (64 * 128 + 128, 64 * 128):
        raise ExerciseError("each weight connects an input channel to an output channel at each of the 3 x 3 kernel positions")
    if answer == weights + 64:
        raise ExerciseError("there is one bias per output channel (128), not per input channel")
    raise ExerciseError("count in_channels * out_channels * kernel_height * kernel_width weights, plus one bias per output channel")
