"""Chapter 10 checkers: stub -> not attempted, wrong -> its own hint, reference -> correct; hints staged."""

import torch

from diffedu.exercises import ch10
from solutions import ch10 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch10.check_subsample(stub, stub), ch10.check_denoising_posterior(stub), ch10.check_dps_gradient(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch10.check_subsample(reference.solution_subsample, reference.solution_subsample_pinv)) == "Exercise 10.1: correct"
    assert ch10.check_denoising_posterior(reference.solution_denoising_posterior)
    assert ch10.check_dps_gradient(reference.solution_dps_gradient)


def test_subsample_mistakes_get_their_hints():
    assert "block mean" in wrong_message(ch10.check_subsample(lambda x: torch.nn.functional.avg_pool2d(x, 2),
                                                              reference.solution_subsample_pinv))
    def repeat(y):  # a right inverse, not the pseudo-inverse
        return y.repeat_interleave(2, -2).repeat_interleave(2, -1)

    first = wrong_message(ch10.check_subsample(reference.solution_subsample, repeat))
    assert "orthogonal projection" in first and "The formula" not in first


def test_posterior_mistakes_get_their_hints():
    assert "y itself" in wrong_message(ch10.check_denoising_posterior(lambda m, s, n, y: (y, s)))
    def swapped(m, s, n, y):
        return (n**2 * y + s**2 * m) / (s**2 + n**2), 1.0

    def variance(m, s, n, y):
        mean, std = reference.solution_denoising_posterior(m, s, n, y)
        return mean, std**2

    assert "swapped" in wrong_message(ch10.check_denoising_posterior(swapped))
    assert "variance" in wrong_message(ch10.check_denoising_posterior(variance))
    stages = hint_stages(ch10.check_denoising_posterior, lambda m, s, n, y: (0.0, 1.0))
    assert "The formula" not in stages[0] and "The formula" in stages[2]


def test_dps_gradient_mistakes_get_their_hints():
    def flipped(*args):
        return -reference.solution_dps_gradient(*args)

    def no_network(x, keep, y, ab, c):
        return -2 * keep * (y - keep * x)

    assert "sign" in wrong_message(ch10.check_dps_gradient(flipped))
    assert "pred_x0 is not x_t" in wrong_message(ch10.check_dps_gradient(no_network))
    stages = hint_stages(ch10.check_dps_gradient, lambda x, keep, y, ab, c: torch.zeros_like(x))
    assert "The formula" not in stages[0] and "The formula" in stages[2]
