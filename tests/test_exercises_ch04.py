"""Chapter 04 checkers: stub -> not attempted, wrong -> hint (idea first, formula late), reference -> correct."""

import math
import re

import pytest
import torch

from diffedu import zoo
from diffedu.course.data import load_mnist
from diffedu.exercises import ch04
from diffedu.metrics import load_classifier
from diffedu.models.vae import kl_to_standard_normal
from solutions import ch04 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch04.check_kl_gaussians(stub), ch04.check_midpoint_fractions(...), ch04.check_psnr_answer(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch04.check_kl_gaussians(reference.solution_kl_gaussians)) == "Exercise 4.1: correct"
    test_set = load_mnist("test")
    fractions = reference.solution_midpoint_fractions(zoo.load("mnist-vae"), load_classifier(), test_set.images, test_set.labels)
    assert ch04.check_midpoint_fractions(fractions)
    assert ch04.check_midpoint_fractions([round(f, 2) for f in fractions])  # rounded by hand
    assert ch04.check_psnr_answer(reference.SOLUTION_4_3)
    assert ch04.check_psnr_answer(23.98)  # rounded by hand
    assert ch04.check_psnr_answer(24)
    assert ch04.check_psnr_answer(torch.tensor(23.979))


def test_the_general_kl_is_4_3_when_p_is_the_prior():
    mean, log_var = torch.randn(2, 3, 4, 7, 7).unbind(0)
    zeros = torch.zeros_like(mean)
    assert torch.allclose(reference.solution_kl_gaussians(mean, log_var, zeros, zeros), kl_to_standard_normal(mean, log_var),
                          rtol=1e-5)


def test_the_psnr_answer_is_what_the_library_computes():
    assert abs(ch04._psnr_of_mse(0.004) - reference.SOLUTION_4_3) < 1e-4


def _kl(mq, lq, mp, lp, half=0.5, minus_one=1.0, in_units_of_p=True):
    scale = lp.exp() if in_units_of_p else 1.0
    return half * (lp - lq + (lq.exp() + (mq - mp) ** 2) / scale - minus_one).flatten(1).sum(1)


KL_MISTAKES = {
    "swapped": (lambda mq, lq, mp, lp: _kl(mp, lp, mq, lq), "KL\\(p \\|\\| q\\)"),
    "no 1/2": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp, half=1.0), "1/2"),
    "mean over coordinates": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp) / (4 * 7 * 7), "sum over the latent"),
    "not in units of var_p": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp, in_units_of_p=False), "units of p's variance"),
    "no -1": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp, minus_one=0.0), "against itself must give 0"),
    "(4.3) again": (lambda mq, lq, mp, lp: kl_to_standard_normal(mq, lq), "that is \\(4.3\\)"),
    "whole batch": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp).sum(), "shape"),
    "something else": (lambda mq, lq, mp, lp: _kl(mq, lq, mp, lp) + 1, "E_q\\[log q\\(z\\) - log p\\(z\\)\\]"),
    "crash": (lambda mq, lq, mp, lp: mq.numpy() + lp, "^your code raised"),
}


@pytest.mark.parametrize("wrong, phrase", KL_MISTAKES.values(), ids=KL_MISTAKES.keys())
def test_kl_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch04.check_kl_gaussians(wrong)))


def test_kl_hint_gives_the_formula_only_late():
    wrong = KL_MISTAKES["something else"][0]
    first, second, third = hint_stages(ch04.check_kl_gaussians, wrong)
    assert ch04.KL_FORMULA not in first and ch04.KL_FORMULA not in second and ch04.KL_FORMULA in third


def test_midpoint_mistakes_get_their_hint():
    latent, pixel, latent_first, pixel_first = ch04.midpoint_fractions()
    assert 0 < latent < 1 and 0 < pixel < 1
    cases = [
        ((pixel, latent), "swapped"),
        ((100 * latent, 100 * pixel), "not percentages"),
        ((latent_first, pixel_first), "not only the first"),
        ((latent, pixel + 0.3 if pixel < 0.6 else pixel - 0.3), "the pixel fraction is off"),
        ((0.5,), "two numbers"),
        (("high", "low"), "a number"),
    ]
    for answer, phrase in cases:
        assert phrase in wrong_message(ch04.check_midpoint_fractions(answer)), answer


@pytest.mark.parametrize(
    "answer, phrase",
    [
        (20 * math.log10(250), "10, not 20"),
        (math.log10(250), "multiply log10"),
        (-23.98, "the sign"),
        (10 * math.log10(4 / 0.004), "peak of 2"),
        (35.0, "4.6"),
        ("24 dB", "a number"),
    ],
)
def test_psnr_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch04.check_psnr_answer(answer))
