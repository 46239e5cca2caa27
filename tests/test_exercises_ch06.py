"""Chapter 06 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ExerciseError, ch06


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted(capsys):
    assert ch06.check_frechet_1d(stub) is False
    assert ch06.check_inception_score(stub) is False
    assert ch06.check_mmd2_unbiased(stub) is False
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_reference_solutions_pass():
    assert ch06.check_frechet_1d(ch06.solution_frechet_1d) is True
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1 - s2) ** 2) is True
    assert ch06.check_frechet_1d(lambda m1, s1, m2, s2: torch.tensor((m1 - m2) ** 2 + (s1 - s2) ** 2)) is True
    assert ch06.check_inception_score(ch06.solution_inception_score) is True
    assert ch06.check_inception_score(lambda p: torch.tensor(ch06.solution_inception_score(p)).float()) is True
    assert ch06.check_mmd2_unbiased(ch06.solution_mmd2_unbiased) is True


def test_wrong_answers_get_hints():
    with pytest.raises(ExerciseError, match="squared distance"):
        ch06.check_frechet_1d(lambda m1, s1, m2, s2: abs(m1 - m2) + abs(s1 - s2))
    with pytest.raises(ExerciseError, match="not \\(var1 - var2\\)"):
        ch06.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1**2 - s2**2) ** 2)
    with pytest.raises(ExerciseError, match="subtracts 2 sqrt"):
        ch06.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + s1**2 + s2**2)

    def mean_kl(probs):
        marginal = probs.mean(0, keepdim=True)
        return (probs * (probs.log() - marginal.log())).sum(1).mean().item()
    with pytest.raises(ExerciseError, match="exponential"):
        ch06.check_inception_score(mean_kl)
    with pytest.raises(ExerciseError, match="exp of the mean"):
        ch06.check_inception_score(lambda p: (p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).exp().mean().item())

    def biased(a, b, kernel):
        return (kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()).item()
    with pytest.raises(ExerciseError, match="biased estimate"):
        ch06.check_mmd2_unbiased(biased)
    with pytest.raises(ExerciseError, match="a number"):
        ch06.check_frechet_1d(lambda *args: "zero")
    assert math.isfinite(ch06.solution_frechet_1d(0.0, 1.0, 1.0, 2.0))
