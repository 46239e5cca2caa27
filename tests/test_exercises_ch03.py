"""Chapter 03 checkers: stub -> not attempted, wrong -> hint (idea first, formula late), reference -> correct."""

import re

import pytest
import torch

from diffedu import zoo
from diffedu.course.data import load_mnist
from diffedu.exercises import ch03
from solutions import ch03 as reference
from exercise_helpers import hint_stages, stub, wrong_message


@pytest.fixture(scope="module")
def reference_x0_errors():
    model, schedule = zoo.load("mnist-unet")
    test_set = load_mnist("test")
    return reference.solution_x0_errors(model, schedule, test_set.images[:1000], test_set.labels[:1000])


def test_stubs_are_not_attempted(capsys):
    for result in (ch03.check_shift_embedding(stub), ch03.check_negative_guidance(stub), ch03.check_x0_errors(...),
                   ch03.check_conv_parameters(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass(reference_x0_errors):
    assert repr(ch03.check_shift_embedding(reference.solution_shift_embedding)) == "Exercise 3.1: correct"
    assert ch03.check_negative_guidance(reference.solution_negative_guided_eps)
    assert ch03.check_x0_errors(reference_x0_errors)
    assert ch03.check_x0_errors({t: torch.tensor(value) for t, value in reference_x0_errors.items()})
    assert ch03.check_conv_parameters(reference.SOLUTION_3_4)
    assert ch03.check_conv_parameters(torch.tensor(reference.SOLUTION_3_4))


def test_the_x0_error_grows_with_t_as_3_4_says():
    eps_errors, x0_errors = ch03.measured_errors()
    values = [x0_errors[t] for t in ch03.ERROR_TIMESTEPS]
    assert values == sorted(values) and values[-1] > 10 * values[0]


def _shifted(rotation_sign: int = 1, sin_sign: int = 1, cos_sign: int = -1, denominator=None):
    def shift(emb, delta):
        half = emb.shape[1] // 2
        freqs = 10_000.0 ** (-torch.arange(half) / (denominator or half))
        sin, cos = emb[:, :half], emb[:, half:]
        turn = rotation_sign * delta * freqs
        return torch.cat([sin * turn.cos() + sin_sign * cos * turn.sin(), cos * turn.cos() + cos_sign * sin * turn.sin()], dim=1)
    return shift


SHIFT_MISTAKES = {
    "backwards": (_shifted(rotation_sign=-1), "embedding of k - delta"),
    "cosine sign": (_shifted(cos_sign=1), "sign in the cosine of a sum"),
    "sine sign": (_shifted(sin_sign=-1, cos_sign=-1), "sign in the sine of a sum"),
    "added embeddings": (lambda emb, d: emb + ch03.timestep_embedding(torch.full((emb.shape[0],), d), emb.shape[1]),
                         "embeddings do not add up"),
    "frequencies over d": (_shifted(denominator=16), "divides i by d/2, not by d"),
    "something else": (lambda emb, d: emb * 2, "point on a circle"),
    "wrong shape": (lambda emb, d: emb[:, :4], "shape \\(5, 16\\)"),
    "crash": (lambda emb, d: emb.reshape(3, -1), "^your code raised RuntimeError"),
}


@pytest.mark.parametrize("wrong, phrase", SHIFT_MISTAKES.values(), ids=SHIFT_MISTAKES.keys())
def test_shift_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch03.check_shift_embedding(wrong)))


def test_shift_hint_gives_the_formula_only_late():
    first, second, third = hint_stages(ch03.check_shift_embedding, lambda emb, d: emb * 2)
    assert "point on a circle" in first and "sin(a + b)" not in first and "sin(a + b)" not in second
    assert "sin(a + b)" in third


NEGATIVE_MISTAKES = {
    "sign of v": (lambda u, c, n, w, v: u + w * (c - u) + v * (n - u), "exponent -v"),
    "no unconditional partner": (lambda u, c, n, w, v: u + w * (c - u) - v * n, "unconditional partner"),
    "Stable Diffusion's negative prompt": (lambda u, c, n, w, v: n + w * (c - n), "negative prompt"),
    "measured from eps_cond": (lambda u, c, n, w, v: u + w * (c - u) - v * (n - c), "measured from the unconditional"),
    "something else": (lambda u, c, n, w, v: c - n, "v = 0 must give \\(3.3\\)"),
    "forgot return": (lambda u, c, n, w, v: None, "returned None"),
    "crash": (lambda u, c, n, w, v: c.lerp(u), "^your code raised TypeError"),
}


@pytest.mark.parametrize("wrong, phrase", NEGATIVE_MISTAKES.values(), ids=NEGATIVE_MISTAKES.keys())
def test_negative_guidance_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch03.check_negative_guidance(wrong)))


def test_negative_guidance_hint_gives_the_formula_only_late():
    stages = hint_stages(ch03.check_negative_guidance, lambda u, c, n, w, v: c - n)
    assert all("v (eps_negative - eps_uncond)" not in message for message in stages[:2])
    assert ch03.NEGATIVE_FORMULA in stages[2]


def test_x0_error_mistakes_get_their_hint(reference_x0_errors):
    eps_errors, x0_errors = ch03.measured_errors()
    snr = {t: eps_errors[t] / x0_errors[t] for t in x0_errors}
    cases = [
        (eps_errors, "errors of the noise prediction"),
        ({t: eps_errors[t] * snr[t] for t in snr}, "does not multiply"),
        ({t: x0_errors[1000 - t] for t in x0_errors}, "shrink as t grows"),
        ({t: 2 * value for t, value in x0_errors.items()}, "the checker measures about"),
        ({100: 0.1}, "needs exactly the keys"),
        ([0.1, 0.2], "answer with a dict"),
        ({t: "small" for t in x0_errors}, "a number"),
    ]
    for answer, phrase in cases:
        assert phrase in wrong_message(ch03.check_x0_errors(answer)), answer


def test_x0_error_hint_for_eps_errors_gives_3_4_only_late():
    eps_errors = ch03.measured_errors()[0]
    first, _, third = hint_stages(ch03.check_x0_errors, eps_errors)
    assert "SNR" not in first and "(3.4): x0-error = eps-error / SNR(t)" in third


@pytest.mark.parametrize(
    "answer, phrase",
    [(64 * 128 * 9, "bias"), (64 * 128 + 128, "3 x 3 kernel positions"), (64 * 128 * 9 + 64, "per output channel (128)"),
     (1000, "count in_channels"), (73_856.5, "whole number"), ("73856", "a number")],
)
def test_conv_parameter_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch03.check_conv_parameters(answer))
