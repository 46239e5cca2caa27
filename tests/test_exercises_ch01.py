"""Chapter 01's checkers: a stub is "not attempted", typical mistakes get their hint, the
reference solutions pass."""

import re

import pytest
import torch

from diffedu.exercises import ch01
from solutions import ch01 as reference
from exercise_helpers import stub, wrong_message


def column(values):
    return values.reshape(-1, 1, 1, 1)


def test_stubs_are_not_attempted(capsys):
    results = [ch01.check_noising_step_batch(stub), ch01.check_skip_ahead(stub), ch01.check_first_snr_below_one(...),
               ch01.check_first_snr_below_one(None)]
    for result in results:
        assert result.status == "not attempted" and not result
        assert repr(result).startswith(f"Exercise {result.label}: not attempted yet")
    assert [result.label for result in results] == ["1.1", "1.2", "1.3", "1.3"]
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass(capsys):
    assert repr(ch01.check_noising_step_batch(reference.solution_noising_step_batch)) == "Exercise 1.1: correct"
    assert ch01.check_skip_ahead(reference.solution_skip_ahead)
    assert ch01.check_first_snr_below_one(reference.SOLUTION_1_3)
    assert ch01.check_first_snr_below_one(torch.tensor(reference.SOLUTION_1_3))  # a 0-d tensor is fine
    assert ch01.check_first_snr_below_one(float(reference.SOLUTION_1_3))  # 259.0 is a whole number
    assert capsys.readouterr().out == ""


def test_solution_1_3_is_where_alpha_bar_crosses_one_half():
    from diffedu.schedules import make_schedule

    alpha_bar = make_schedule("linear").alpha_bar
    k = reference.SOLUTION_1_3  # a code index
    assert alpha_bar[k - 1] >= 0.5 > alpha_bar[k]


# Exercise 1.1: typical wrong answers and the hint each must get.
STEP_MISTAKES = {
    "variances instead of standard deviations": (
        lambda x, k, eps, b: column(1 - b[k]) * x + column(b[k]) * eps,
        "standard deviations",
    ),
    "no shrink (a random walk)": (
        lambda x, k, eps, b: x + column(b[k]).sqrt() * eps,
        r"shrink x_\{t-1\} by sqrt\(alpha_t\)",
    ),
    "square root on the noise only": (
        lambda x, k, eps, b: column(1 - b[k]) * x + column(b[k]).sqrt() * eps,
        r"the noise term is right, but x_\{t-1\} needs a square root too",
    ),
    "square root on x only": (
        lambda x, k, eps, b: column(1 - b[k]).sqrt() * x + column(b[k]) * eps,
        "the noise needs a square root too",
    ),
    "coefficients swapped": (
        lambda x, k, eps, b: column(b[k]).sqrt() * x + column(1 - b[k]).sqrt() * eps,
        "swapped",
    ),
    "alpha_bar instead of alpha": (
        lambda x, k, eps, b: column(torch.cumprod(1 - b, 0)[k]).sqrt() * x
        + column(1 - torch.cumprod(1 - b, 0)[k]).sqrt() * eps,
        "alpha_bar_t is for the jump from x_0",
    ),
    "betas[k - 1]": (
        lambda x, k, eps, b: column(1 - b[k - 1]).sqrt() * x + column(b[k - 1]).sqrt() * eps,
        "off by one",
    ),
    "betas[k + 1]": (
        lambda x, k, eps, b: column(1 - b[k + 1]).sqrt() * x + column(b[k + 1]).sqrt() * eps,
        "IndexError.*no \\+1",
    ),
    "no reshape to (B, 1, 1, 1)": (
        lambda x, k, eps, b: (1 - b[k]).sqrt() * x + b[k].sqrt() * eps,
        r"broadcasting error.*\(B, 1, 1, 1\)",
    ),
    "forgot return": (lambda x, k, eps, b: None, "forget `return x_t`"),
    "one beta for the whole batch": (
        lambda x, k, eps, b: (1 - b[k[0]]).sqrt() * x + b[k[0]].sqrt() * eps,
        r"one alpha_t per image",
    ),
    "a crash in the learner's code": (
        lambda x, k, eps, b: x.sqrt(1 - b[k]),
        r"^your code raised TypeError: ",
    ),
    "a square root of a negative number": (
        lambda x, k, eps, b: column(b[k] - 1).sqrt() * x + column(b[k]).sqrt() * eps,
        "NaN or inf",
    ),
}


@pytest.mark.parametrize("wrong, hint", STEP_MISTAKES.values(), ids=STEP_MISTAKES.keys())
def test_noising_step_mistakes_get_their_hint(wrong, hint):
    assert re.search(hint, wrong_message(ch01.check_noising_step_batch(wrong)))


def _keep(alpha_bar, k_from, k_to):
    return alpha_bar[k_to] / (alpha_bar[k_from] if k_from >= 0 else 1.0)


# Exercise 1.2
SKIP_MISTAKES = {
    "ignores k_from (jumps from x_0)": (
        lambda x, k_from, k_to, eps, ab: ab[k_to].sqrt() * x + (1 - ab[k_to]).sqrt() * eps,
        r"q\(x_t \| x_0\)",
    ),
    "alpha_bar[-1] for k_from = -1": (
        lambda x, k_from, k_to, eps, ab: (ab[k_to] / ab[k_from]).sqrt() * x + (1 - ab[k_to] / ab[k_from]).sqrt() * eps,
        r"alpha_bar\[-1\] is the LAST entry",
    ),
    "no square roots": (
        lambda x, k_from, k_to, eps, ab: _keep(ab, k_from, k_to) * x + (1 - _keep(ab, k_from, k_to)) * eps,
        "take square roots",
    ),
    "noise variance 1 - alpha_bar_t": (
        lambda x, k_from, k_to, eps, ab: _keep(ab, k_from, k_to).sqrt() * x + (1 - ab[k_to]).sqrt() * eps,
        "only the remaining steps add new noise",
    ),
    "ratio from alpha_bar[k_from - 1]": (
        lambda x, k_from, k_to, eps, ab: _keep(ab, k_from - 1, k_to).sqrt() * x + (1 - _keep(ab, k_from - 1, k_to)).sqrt() * eps,
        "AFTER code step k_from",
    ),
    "ratio inverted": (
        lambda x, k_from, k_to, eps, ab: (1 / _keep(ab, k_from, k_to)).sqrt() * x + (1 - 1 / _keep(ab, k_from, k_to)).sqrt() * eps,
        "NaN or inf",
    ),
    "something else": (
        lambda x, k_from, k_to, eps, ab: 0.5 * x + 0.5 * eps,
        r"for k_from = 99, k_to = 499.*alpha_bar\[k_to\] / alpha_bar\[k_from\]",
    ),
}


@pytest.mark.parametrize("wrong, hint", SKIP_MISTAKES.values(), ids=SKIP_MISTAKES.keys())
def test_skip_ahead_mistakes_get_their_hint(wrong, hint):
    assert re.search(hint, wrong_message(ch01.check_skip_ahead(wrong)))


@pytest.mark.parametrize(
    "answer, hint",
    [
        (reference.SOLUTION_1_3 + 1, "counts from 1"),
        (reference.SOLUTION_1_3 - 1, "still .* not below 1"),
        (10, "still .* not below 1"),
        (700, "not the first"),
        (496, "cosine"),
        (1000, "from 0 to 999"),
        (259.5, "whole number"),
        ("259", "a number .*got .259."),
        (True, "a number"),
        (torch.tensor([259, 260]), "one number"),
    ],
)
def test_snr_answer_mistakes_get_their_hint(answer, hint):
    assert re.search(hint, wrong_message(ch01.check_first_snr_below_one(answer)))
