"""Chapter 04 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math
import re

import pytest
import torch

from diffedu.exercises import ch04
from solutions import ch04 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch04.check_reparameterize(stub), ch04.check_kl(stub), ch04.check_psnr_answer(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch04.check_reparameterize(reference.solution_reparameterize)) == "Exercise 4.1: correct"
    assert ch04.check_kl(reference.solution_kl)
    assert ch04.check_psnr_answer(reference.SOLUTION_4_3)
    assert ch04.check_psnr_answer(23.98)  # rounded by hand
    assert ch04.check_psnr_answer(24)
    assert ch04.check_psnr_answer(torch.tensor(23.979))


def test_the_psnr_answer_is_what_the_library_computes():
    assert abs(ch04._psnr_of_mse(0.004) - reference.SOLUTION_4_3) < 1e-4


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda m, lv, e: m + lv.exp() * e, r"exp\(log_var\) is the variance"),
        (lambda m, lv, e: m + lv * e, "log_var is a log-variance"),
        (lambda m, lv, e: (m + torch.exp(0.5 * lv) * e).detach(), "gradients must flow"),
        (lambda m, lv, e: m.detach() + torch.exp(0.5 * lv) * e, "both mean and log_var"),
        (lambda m, lv, e: m + torch.exp(0.5 * lv), "z = mean \\+ exp\\(log_var / 2\\) \\* eps"),
        (lambda m, lv, e: m.numpy() + e, "^your code raised RuntimeError"),
    ],
)
def test_reparameterize_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch04.check_reparameterize(wrong)))


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda m, lv: 2 * reference.solution_kl(m, lv), "1/2"),
        (lambda m, lv: 0.5 * (m.pow(2) + lv.exp() - 1 - lv).flatten(1).mean(1), "sum over the latent"),
        (lambda m, lv: 0.5 * (m.pow(2) + lv.exp() - 1 - lv).sum(), "shape"),
        (lambda m, lv: 0.5 * (m.pow(2) + lv.exp() - lv).flatten(1).sum(1), "mean\\^2 \\+ exp"),
    ],
)
def test_kl_mistakes_get_their_hint(wrong, phrase):
    assert re.search(phrase, wrong_message(ch04.check_kl(wrong)))


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
