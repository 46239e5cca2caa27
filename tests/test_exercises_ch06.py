"""Chapter 06 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ch06
from solutions import ch06 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch06.check_frechet_1d(stub), ch06.check_inception_score(stub), ch06.check_mmd2_unbiased(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch06.check_frechet_1d(reference.solution_frechet_1d)) == "Exercise 6.1: correct"
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1 - s2) ** 2)
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: torch.tensor((m1 - m2) ** 2 + (s1 - s2) ** 2))
    assert ch06.check_inception_score(reference.solution_inception_score)
    assert ch06.check_inception_score(lambda p: torch.tensor(reference.solution_inception_score(p)).float())
    assert ch06.check_mmd2_unbiased(reference.solution_mmd2_unbiased)
    assert math.isfinite(reference.solution_frechet_1d(0.0, 1.0, 1.0, 2.0))


def _mean_kl(probs):
    marginal = probs.mean(0, keepdim=True)
    return (probs * (probs.log() - marginal.log())).sum(1).mean().item()


def _biased(a, b, kernel):
    return (kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()).item()


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: abs(m1 - m2) + abs(s1 - s2), "squared distance"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1**2 - s2**2) ** 2, "not (var1 - var2)"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2 + s1**2 + s2**2, "subtracts 2 sqrt"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: (m1 - m2) ** 2, "specialise (6.1) to 1-D"),
        (ch06.check_frechet_1d, lambda *args: "zero", "a number"),
        (ch06.check_frechet_1d, lambda *args: None, "returned None"),
        (ch06.check_frechet_1d, lambda m1, s1, m2, s2: math.log(m1 - m2), "your code raised ValueError: math domain"),
        (ch06.check_inception_score, _mean_kl, "exponential"),
        (ch06.check_inception_score,
         lambda p: (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).exp().mean().item(), "exp of the mean"),
        (ch06.check_inception_score,
         lambda p: (p.mean(0, keepdim=True) * (p.mean(0, keepdim=True).log() - p.log())).sum(1).mean().exp().item(),
         "the KL runs from p(y | x) to p(y)"),
        (ch06.check_inception_score, lambda p: p.max(1).values, "as one number"),
        (ch06.check_mmd2_unbiased, _biased, "biased estimate"),
        (ch06.check_mmd2_unbiased, lambda a, b, kernel: _biased(a, b, kernel) / 2, "within-set means over pairs"),
    ],
)
def test_wrong_answers_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))
