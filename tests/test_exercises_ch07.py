"""Chapter 07 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ch07
from diffedu.schedules import NoiseSchedule, make_schedule
from diffedu.sde import probability_flow_sample, sigma_of
from solutions import ch07 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch07.check_score_from_eps(stub), ch07.check_langevin_step(stub), ch07.check_flow_factor(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch07.check_score_from_eps(reference.solution_score_from_eps)) == "Exercise 7.1: correct"
    assert ch07.check_langevin_step(reference.solution_langevin_step)
    assert ch07.check_flow_factor(reference.SOLUTION_7_3)
    assert ch07.check_flow_factor(0.2425)  # rounded by hand
    assert ch07.check_flow_factor(torch.tensor(0.24254))
    assert ch07.check_flow_factor(0.24)  # two figures
    assert ch07.check_score_from_eps(lambda e, a: (-e / math.sqrt(1 - a)).float())  # float32 is fine


def test_the_checkers_quadrature_agrees_with_the_closed_form():
    assert abs(ch07._flow_factor(0.5, 2.0) - reference.SOLUTION_7_3) < 1e-9


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch07.check_score_from_eps, lambda e, a: e / math.sqrt(1 - a), "sign"),
        (ch07.check_score_from_eps, lambda e, a: -e / (1 - a), "not by its variance"),
        (ch07.check_score_from_eps, lambda e, a: -e * math.sqrt(1 - a), "multiplying gives eps from the score"),
        (ch07.check_score_from_eps, lambda e, a: -e / math.sqrt(a), "score = -eps / sqrt(1 - alpha_bar)"),
        (ch07.check_score_from_eps, lambda e, a: -e / math.sqrt(1 - a.item()), "your code raised AttributeError"),
        (ch07.check_langevin_step, lambda x, s, d, z: x + d * s + math.sqrt(d) * z, "factor 1/2"),
        (ch07.check_langevin_step, lambda x, s, d, z: x + 0.5 * d * s + d * z, "scaled by sqrt(step_size)"),
        (ch07.check_langevin_step, lambda x, s, d, z: x + 0.5 * d * s, "gradient ascent"),
        (ch07.check_langevin_step, lambda x, s, d, z: x - 0.5 * d * s + math.sqrt(d) * z, "x + (step_size / 2) * score"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize(
    "answer, phrase",
    [
        (1 / reference.SOLUTION_7_3, "other way"),
        (0.25, "much larger"),
        (reference.SOLUTION_7_3**2, "mind the 1/2"),
        (0.5, "separate the variables"),
        ("0.24", "a number"),
    ],
)
def test_wrong_factors_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch07.check_flow_factor(answer))


def test_the_flow_factor_is_what_the_heun_solver_computes():
    """Exercise 7.3's answer, checked by solving the ODE numerically between sigma = 2 and 0."""
    std = 0.5
    schedule = make_schedule("linear").to(dtype=torch.float64)
    start = int((sigma_of(schedule.alpha_bar) <= 2).nonzero().max())  # the timestep with sigma just below 2

    def model(x_t, t):  # the exact eps for data N(0, std^2 I)
        alpha_bar = schedule.alpha_bar[t].view(-1, 1)
        return (1 - alpha_bar).sqrt() * x_t / (alpha_bar * std**2 + 1 - alpha_bar)

    # solve only the part of the schedule below sigma = 2: a schedule whose last step is `start`
    sub = NoiseSchedule(schedule.name, *(getattr(schedule, f)[: start + 1] for f in
                         ("betas", "alphas", "alpha_bar", "posterior_coef_x0", "posterior_coef_xt", "posterior_variance")))
    sigma_start = sigma_of(sub.alpha_bar[-1]).item()
    x_init = torch.ones(1, 1, dtype=torch.float64) * sub.alpha_bar[-1].sqrt()  # x_bar = 1 at sigma_start
    x0 = probability_flow_sample(model, (1, 1), sub, start + 1, "heun", x_init=x_init, progress=False).samples
    assert math.isclose(x0.item(), std / math.sqrt(std**2 + sigma_start**2), rel_tol=1e-3)
    assert abs(sigma_start - 2) < 0.01 and abs(x0.item() - reference.SOLUTION_7_3) < 2e-3
