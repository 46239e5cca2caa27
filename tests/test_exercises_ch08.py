"""Chapter 08 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import pytest

from diffedu.exercises import ch08
from solutions import ch08 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch08.check_velocity_from_eps(stub), ch08.check_euler_step(stub), ch08.check_distillation_target(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch08.check_velocity_from_eps(reference.solution_velocity_from_eps)) == "Exercise 8.1: correct"
    assert ch08.check_euler_step(reference.solution_euler_step)
    assert ch08.check_distillation_target(reference.solution_distillation_target)
    assert ch08.check_velocity_from_eps(lambda x, e, t: (e - x).float() / (1 - t))  # float32 is fine


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch08.check_velocity_from_eps, lambda x, e, t: (x - e) / (1 - t), "check the sign"),
        (ch08.check_velocity_from_eps, lambda x, e, t: (e - x) / t, "divide by 1 - t"),
        (ch08.check_velocity_from_eps, lambda x, e, t: e - x, "x_t is not x_0"),
        (ch08.check_velocity_from_eps, lambda x, e, t: e, "v = (eps - x_t) / (1 - t)"),
        (ch08.check_euler_step, lambda x, t, tn, v: x + (t - tn) * v, "runs backwards in time"),
        (ch08.check_euler_step, lambda x, t, tn, v: x - t * v, "estimate of x_0"),
        (ch08.check_euler_step, lambda x, t, tn, v: x + tn * v, "x_t + (t_next - t) v"),
        (ch08.check_distillation_target, lambda x, xn, t, tn: (x - xn) / (tn - t), "check the sign"),
        (ch08.check_distillation_target, lambda x, xn, t, tn: xn - x, "displacement"),
        (ch08.check_distillation_target, lambda x, xn, t, tn: 2 * (xn - x) / (tn - t), "whole interval"),
        (ch08.check_distillation_target, lambda x, xn, t, tn: xn / (tn - t), "(x_next - x_t) / (t_next - t)"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))
