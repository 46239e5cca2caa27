"""Chapter 03 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import re

import pytest
import torch

from diffedu.exercises import ch03
from solutions import ch03 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch03.check_sinusoidal_embedding(stub), ch03.check_guided_eps(stub), ch03.check_conv_parameters(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch03.check_sinusoidal_embedding(reference.solution_sinusoidal_embedding)) == "Exercise 3.1: correct"
    assert ch03.check_guided_eps(reference.solution_guided_eps)
    assert ch03.check_conv_parameters(reference.SOLUTION_3_3)
    assert ch03.check_conv_parameters(torch.tensor(reference.SOLUTION_3_3))


def test_guidance_in_ho_and_salimans_convention_is_right_once_w_is_converted():
    """Their (1 + w') eps_cond - w' eps_uncond with w' = w - 1 is (3.3)."""
    assert ch03.check_guided_eps(lambda c, u, w: (1 + (w - 1)) * c - (w - 1) * u)


def _embedding(t, dim, exponent_denominator=None, order="sin-cos", shift=0):
    half = dim // 2
    freqs = 10_000.0 ** (-torch.arange(half) / (exponent_denominator or half))  # (half,)
    angles = (t.float() + shift)[:, None] * freqs[None, :]  # (B, half)
    if order == "sin-cos":
        return torch.cat([angles.sin(), angles.cos()], dim=1)
    if order == "cos-sin":
        return torch.cat([angles.cos(), angles.sin()], dim=1)
    if order == "interleaved":
        return torch.stack([angles.sin(), angles.cos()], dim=2).flatten(1)
    raise ValueError(order)


EMBEDDING_MISTAKES = {
    "cosines first": (lambda t, dim: _embedding(t, dim, order="cos-sin"), "sines first, then cosines"),
    "interleaved": (lambda t, dim: _embedding(t, dim, order="interleaved"), "you interleaved them"),
    "t + 1": (lambda t, dim: _embedding(t, dim, shift=1), "you embedded k \\+ 1, the paper's t"),
    "exponent i / d": (lambda t, dim: _embedding(t, dim, exponent_denominator=dim), "not by d:"),
    "exponent i / (d/2 - 1)": (lambda t, dim: _embedding(t, dim, exponent_denominator=dim // 2 - 1), "not by d/2 - 1"),
    "something else": (lambda t, dim: _embedding(t * 2, dim), "frequencies are w_i"),
    "wrong shape": (lambda t, dim: _embedding(t, dim)[:, : dim // 2], "shape \\(4, 16\\)"),
    "crash": (lambda t, dim: t.reshape(dim, -1), "^your code raised RuntimeError"),
}


@pytest.mark.parametrize("wrong, phrase", EMBEDDING_MISTAKES.values(), ids=EMBEDDING_MISTAKES.keys())
def test_embedding_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch03.check_sinusoidal_embedding(wrong)))


GUIDANCE_MISTAKES = {
    "Ho & Salimans' form with our w": (lambda c, u, w: (1 + w) * c - w * u, "the paper's w is our w - 1"),
    "direction flipped": (lambda c, u, w: u + w * (u - c), "from the unconditional prediction towards"),
    "scaled conditional": (lambda c, u, w: w * c, "not guidance"),
    "something else": (lambda c, u, w: c + u, "w = 0 must give eps_uncond"),
    "forgot return": (lambda c, u, w: None, "returned None"),
    "crash": (lambda c, u, w: c.lerp(u), "^your code raised TypeError"),
}


@pytest.mark.parametrize("wrong, phrase", GUIDANCE_MISTAKES.values(), ids=GUIDANCE_MISTAKES.keys())
def test_guidance_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch03.check_guided_eps(wrong)))


@pytest.mark.parametrize(
    "answer, phrase",
    [(64 * 128 * 9, "bias"), (64 * 128 + 128, "3 x 3 kernel positions"), (64 * 128 * 9 + 64, "per output channel (128)"),
     (1000, "count in_channels"), (73_856.5, "whole number"), ("73856", "a number")],
)
def test_conv_parameter_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch03.check_conv_parameters(answer))
