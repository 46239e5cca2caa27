"""Chapter 01's checkers: a stub is "not attempted", typical mistakes get their hint (the idea
first, the formula only from the third wrong try), the reference solutions pass."""

import re

import pytest
import torch

from diffedu.exercises import ch01
from diffedu.schedules import make_schedule
from solutions import ch01 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    results = [ch01.check_skip_ahead(stub), ch01.check_cosine_betas(stub), ch01.check_scaled_snr_crossing(...),
               ch01.check_scaled_snr_crossing(None)]
    for result in results:
        assert result.status == "not attempted" and not result
        assert repr(result).startswith(f"Exercise {result.label}: not attempted yet")
    assert [result.label for result in results] == ["1.1", "1.2", "1.3", "1.3"]
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass(capsys):
    assert repr(ch01.check_skip_ahead(reference.solution_skip_ahead)) == "Exercise 1.1: correct"
    assert ch01.check_skip_ahead(lambda ab, k_from, k_to: tuple(float(v) for v in reference.solution_skip_ahead(ab, k_from, k_to)))
    assert ch01.check_cosine_betas(reference.solution_cosine_betas)
    assert ch01.check_scaled_snr_crossing(reference.SOLUTION_1_3)
    assert ch01.check_scaled_snr_crossing(torch.tensor(reference.SOLUTION_1_3))  # a 0-d tensor is fine
    assert ch01.check_scaled_snr_crossing(float(reference.SOLUTION_1_3))  # 145.0 is a whole number
    assert capsys.readouterr().out == ""


def test_skip_ahead_agrees_with_running_the_steps():
    """The reference jump gives the distribution of the remaining steps run one by one (exactly, by (1.3))."""
    schedule = make_schedule("linear")
    alpha_bar, alphas = schedule.alpha_bar.double(), schedule.alphas.double()
    signal_scale, noise_std = reference.solution_skip_ahead(alpha_bar, 99, 499)
    assert torch.isclose(signal_scale**2, alphas[100:500].prod())
    assert torch.isclose(signal_scale**2 + noise_std**2, torch.ones((), dtype=torch.float64))


def test_solution_1_3_is_where_the_scaled_snr_crosses_one():
    alpha_bar = make_schedule("linear").alpha_bar.double()
    k, c = reference.SOLUTION_1_3, ch01.SCALE_1_3
    assert c**2 * alpha_bar[k - 1] / (1 - alpha_bar[k - 1]) >= 1 > c**2 * alpha_bar[k] / (1 - alpha_bar[k])


def _keep(alpha_bar, k_from, k_to):
    return alpha_bar[k_to] / (alpha_bar[k_from] if k_from >= 0 else 1.0)


# Exercise 1.1: typical wrong answers and the hint each must get.
SKIP_MISTAKES = {
    "jumps from x_0": (lambda ab, k_from, k_to: (ab[k_to].sqrt(), (1 - ab[k_to]).sqrt()), r"q\(x_t \| x_0\)"),
    "alpha_bar[-1] for k_from = -1": (
        lambda ab, k_from, k_to: ((ab[k_to] / ab[k_from]).sqrt(), (1 - ab[k_to] / ab[k_from]).sqrt()),
        r"alpha_bar\[-1\] is the LAST entry"),
    "no square roots": (lambda ab, k_from, k_to: (_keep(ab, k_from, k_to), 1 - _keep(ab, k_from, k_to)), "standard deviations"),
    "noise variance 1 - alpha_bar_t": (
        lambda ab, k_from, k_to: (_keep(ab, k_from, k_to).sqrt(), (1 - ab[k_to]).sqrt()), "only the remaining steps add new noise"),
    "ratio from alpha_bar[k_from - 1]": (
        lambda ab, k_from, k_to: (_keep(ab, k_from - 1, k_to).sqrt(), (1 - _keep(ab, k_from - 1, k_to)).sqrt()), "AFTER code step k_from"),
    "ratio from alpha_bar[k_to - 1]": (
        lambda ab, k_from, k_to: (_keep(ab, k_from, k_to - 1).sqrt(), (1 - _keep(ab, k_from, k_to - 1)).sqrt()), "step is included"),
    "ratio inverted": (
        lambda ab, k_from, k_to: ((1 / _keep(ab, k_from, k_to)).sqrt(), (1 - 1 / _keep(ab, k_from, k_to)).sqrt()), "NaN or inf"),
    "one value": (lambda ab, k_from, k_to: _keep(ab, k_from, k_to).sqrt(), "return a pair"),
    "something else": (lambda ab, k_from, k_to: (0.5, 0.5), r"for k_from = 99, k_to = 499: write the remaining steps as one step"),
    "a crash": (lambda ab, k_from, k_to: ab.sqrt(k_from), "^your code raised TypeError"),
}


@pytest.mark.parametrize("wrong, hint", SKIP_MISTAKES.values(), ids=SKIP_MISTAKES.keys())
def test_skip_ahead_mistakes_get_their_hint(wrong, hint):
    assert re.search(hint, wrong_message(ch01.check_skip_ahead(wrong)))


def test_skip_ahead_hints_come_in_stages():
    first, _, third = hint_stages(ch01.check_skip_ahead, SKIP_MISTAKES["jumps from x_0"][0])
    assert "The formula" not in first and "alpha_bar[k_to] / alpha_bar_from" not in first
    assert "The formula: signal_scale = sqrt(alpha_bar[k_to] / alpha_bar_from)" in third


# Exercise 1.2: the cosine betas
COSINE_MISTAKES = {kind: (lambda T, kind=kind: ch01._cosine_variant(T, kind), hint) for kind, hint in {
    "not clipped": "Clip the betas",
    "alpha_bar": "those are the alpha_bars",
    "alphas": "those are the alphas",
    "inverted": "upside down",
    "no square": "squares the cosine",
    "no offset": "offset s = 0.008 is missing",
}.items()}
COSINE_MISTAKES["T + 1 values"] = (lambda T: torch.zeros(T + 1, dtype=torch.float64), "T betas")
COSINE_MISTAKES["something else"] = (lambda T: torch.full((T,), 0.01, dtype=torch.float64), "off by up to")
COSINE_MISTAKES["no return"] = (lambda T: None, "forget `return")


@pytest.mark.parametrize("wrong, hint", COSINE_MISTAKES.values(), ids=COSINE_MISTAKES.keys())
def test_cosine_mistakes_get_their_hint(wrong, hint):
    assert re.search(hint, wrong_message(ch01.check_cosine_betas(wrong)))


def test_cosine_hints_come_in_stages():
    first, second, third = hint_stages(ch01.check_cosine_betas, COSINE_MISTAKES["no square"][0])
    assert "The formula" not in first and "cos((t / T" not in first and "The formula" not in second
    assert "The formula: f = cos((t / T + s) / (1 + s) * pi / 2) ** 2" in third


# Exercise 1.3
@pytest.mark.parametrize(
    "answer, hint",
    [
        (reference.SOLUTION_1_3 + 1, "counts from 1"),
        (259, r"unscaled data \(c = 1\)"),
        (197, "c\\^2, not c"),
        (396, "earlier, not later"),
        (289, "cosine"),
        (10, "still .*look later"),
        (700, "not the first"),
        (1000, "from 0 to 999"),
        (145.5, "whole number"),
        ("145", "a number .*got .145."),
        (True, "a number"),
        (torch.tensor([145, 146]), "one number"),
    ],
)
def test_scaled_snr_answer_mistakes_get_their_hint(answer, hint):
    assert re.search(hint, wrong_message(ch01.check_scaled_snr_crossing(answer)))


def test_scaled_snr_hints_come_in_stages():
    first, _, third = hint_stages(ch01.check_scaled_snr_crossing, 259)
    assert "The formula" not in first and "c^2 * alpha_bar" not in first
    assert "The formula: the first k with c^2 * alpha_bar[k]" in third
