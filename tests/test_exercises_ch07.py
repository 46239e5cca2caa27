"""Chapter 07 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ExerciseError, ch07
from diffedu.schedules import NoiseSchedule, make_schedule
from diffedu.sde import probability_flow_sample, sigma_of


def stub(*args):
    raise NotImplementedError


def test_stubs_are_not_attempted(capsys):
    assert ch07.check_score_from_eps(stub) is False
    assert ch07.check_langevin_step(stub) is False
    assert ch07.check_flow_factor(...) is False
    assert capsys.readouterr().out.count("not attempted yet") == 3


def test_reference_solutions_pass():
    assert ch07.check_score_from_eps(ch07.solution_score_from_eps) is True
    assert ch07.check_langevin_step(ch07.solution_langevin_step) is True
    assert ch07.check_flow_factor(ch07.SOLUTION_7_3) is True
    assert ch07.check_flow_factor(0.2425) is True  # rounded by hand
    assert ch07.check_flow_factor(torch.tensor(0.24254)) is True
    assert ch07.check_flow_factor(0.24) is True  # two figures
    assert ch07.check_score_from_eps(lambda e, a: (-e / math.sqrt(1 - a)).float()) is True  # float32 is fine


def test_wrong_answers_get_hints():
    with pytest.raises(ExerciseError, match="sign"):
        ch07.check_score_from_eps(lambda e, a: e / math.sqrt(1 - a))
    with pytest.raises(ExerciseError, match="variance"):
        ch07.check_score_from_eps(lambda e, a: -e / (1 - a))
    with pytest.raises(ExerciseError, match="1/2"):
        ch07.check_langevin_step(lambda x, s, d, z: x + d * s + math.sqrt(d) * z)
    with pytest.raises(ExerciseError, match="sqrt"):
        ch07.check_langevin_step(lambda x, s, d, z: x + 0.5 * d * s + d * z)
    with pytest.raises(ExerciseError, match="other way"):
        ch07.check_flow_factor(1 / ch07.SOLUTION_7_3)
    with pytest.raises(ExerciseError, match="much larger"):
        ch07.check_flow_factor(0.25)


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
    assert abs(sigma_start - 2) < 0.01 and abs(x0.item() - ch07.SOLUTION_7_3) < 2e-3
