"""Chapter 10 checkers: stub -> not attempted, wrong -> its own hint, reference -> correct; hints staged."""

import torch

from diffedu.exercises import ch10
from solutions import ch10 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch10.check_subsample(stub, stub), ch10.check_restoration_errors(stub), ch10.check_dps_gradient(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch10.check_subsample(reference.solution_subsample, reference.solution_subsample_pinv)) == "Exercise 10.1: correct"
    assert ch10.check_restoration_errors(reference.solution_restoration_errors)
    assert ch10.check_dps_gradient(reference.solution_dps_gradient)


def test_subsample_mistakes_get_their_hints():
    assert "block mean" in wrong_message(ch10.check_subsample(lambda x: torch.nn.functional.avg_pool2d(x, 2),
                                                              reference.solution_subsample_pinv))
    def repeat(y):  # a right inverse, not the pseudo-inverse
        return y.repeat_interleave(2, -2).repeat_interleave(2, -1)

    first = wrong_message(ch10.check_subsample(reference.solution_subsample, repeat))
    assert "orthogonal projection" in first and "The formula" not in first


def test_error_mistakes_get_their_hints():
    def same_as_mean(s, n):
        of_y, of_mean, _ = reference.solution_restoration_errors(s, n)
        return of_y, of_mean, of_mean

    def standard_deviation(s, n):
        of_y, of_mean, of_sample = reference.solution_restoration_errors(s, n)
        return of_y, of_mean**0.5, of_sample

    assert "spreads add" in wrong_message(ch10.check_restoration_errors(same_as_mean))
    assert "standard deviation" in wrong_message(ch10.check_restoration_errors(standard_deviation))
    assert "noise's variance" in wrong_message(ch10.check_restoration_errors(lambda s, n: (n, 0.0, 0.0)))
    stages = hint_stages(ch10.check_restoration_errors, lambda s, n: (n**2, 1.0, 1.0))
    assert "The formula" not in stages[0] and "The formula" in stages[2]


def test_dps_gradient_by_autograd_is_told_to_work_by_hand():
    def with_autograd(x_t, keep, y, alpha_bar, c):
        x = x_t.detach().requires_grad_(True)
        pred_x0 = (x - (1 - alpha_bar) ** 0.5 * c * x) / alpha_bar**0.5
        return torch.autograd.grad(((y - keep * pred_x0) ** 2).sum(), x)[0]

    assert "by hand" in wrong_message(ch10.check_dps_gradient(with_autograd))


def test_dps_gradient_mistakes_get_their_hints():
    def flipped(*args):
        return -reference.solution_dps_gradient(*args)

    def no_network(x, keep, y, ab, c):
        return -2 * keep * (y - keep * x)

    assert "sign" in wrong_message(ch10.check_dps_gradient(flipped))
    assert "pred_x0 is not x_t" in wrong_message(ch10.check_dps_gradient(no_network))
    stages = hint_stages(ch10.check_dps_gradient, lambda x, keep, y, ab, c: torch.zeros_like(x))
    assert "The formula" not in stages[0] and "The formula" in stages[2]
