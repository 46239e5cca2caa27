"""Chapter 07 checkers: stub -> not attempted, wrong -> hint (the idea first, the formula from the third try),
reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ch07
from diffedu.schedules import NoiseSchedule, make_schedule
from diffedu.sde import ode_euler_step, probability_flow_sample, sigma_of
from solutions import ch07 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch07.check_heun_step(stub), ch07.check_euler_step_in_u(stub), ch07.check_clock_ratio(...),
                   ch07.check_flow_factor(...)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch07.check_heun_step(reference.solution_heun_step)) == "Exercise 7.1: correct"
    assert ch07.check_euler_step_in_u(reference.solution_euler_step_in_u)
    assert ch07.check_clock_ratio(reference.SOLUTION_7_3)
    assert ch07.check_flow_factor(reference.SOLUTION_7_4)
    assert ch07.check_flow_factor(0.2425)  # rounded by hand
    assert ch07.check_flow_factor(torch.tensor(0.24254))
    assert ch07.check_flow_factor(0.24)  # two figures


def test_float32_answers_pass():
    def heun_float32(model, x_t, t, k_next, schedule):
        return reference.solution_heun_step(lambda x, k: model(x, k).float(), x_t.float(), t, k_next, schedule)

    assert ch07.check_heun_step(heun_float32)


def test_the_measured_ratio_is_what_the_chapter_measures():
    """7.3's answer: Euler in u against DDIM, 20 steps, on the chapter's own setting (its 1,000-step Heun reference),
    with the reference solution's step; and it holds with the chapter's full-mode number of points."""
    from diffedu.course.device import randn
    from diffedu.samplers import ddim_timesteps
    from diffedu.toy import exact_noise_predictor, make_toy_mixture

    linear = make_schedule("linear").to(dtype=torch.float64)
    model = exact_noise_predictor(make_toy_mixture(), linear)
    x_start = randn((2000, 2), torch.Generator().manual_seed(6)).double()
    exact = probability_flow_sample(model, (2000, 2), linear, 1000, "heun", x_init=x_start, progress=False).samples
    x_u, x_ddim = x_start.clone(), x_start.clone()
    timesteps = ddim_timesteps(1000, 20, "trailing")
    for t, k_next in zip(timesteps, timesteps[1:] + [-1]):
        x_u = reference.solution_euler_step_in_u(x_u, t, k_next, model(x_u, torch.full((2000,), t)), linear)
        x_ddim = ode_euler_step(x_ddim, t, k_next, model(x_ddim, torch.full((2000,), t)), linear)
    ratio = (x_u - exact).norm(dim=1).mean().item() / (x_ddim - exact).norm(dim=1).mean().item()
    assert ch07.check_clock_ratio(ratio)
    assert abs(ratio - reference.SOLUTION_7_3) < 0.03
    assert abs(ch07.clock_ratio(num_points=10_000) - reference.SOLUTION_7_3) < 0.03


def test_the_checkers_quadrature_agrees_with_the_closed_form():
    assert abs(ch07._flow_factor(0.5, 2.0) - reference.SOLUTION_7_4) < 1e-9


def heun_euler_only(model, x, t, k_next, schedule):
    return ode_euler_step(x, t, k_next, model(x, t), schedule)


def heun_end_slope(model, x, t, k_next, schedule):
    return ode_euler_step(x, t, k_next, model(ode_euler_step(x, t, k_next, model(x, t), schedule), k_next), schedule)


def heun_added(model, x, t, k_next, schedule):
    end = model(ode_euler_step(x, t, k_next, model(x, t), schedule), k_next)
    return ode_euler_step(x, t, k_next, model(x, t) + end, schedule)


def heun_second_call_at_t(model, x, t, k_next, schedule):
    end = model(ode_euler_step(x, t, k_next, model(x, t), schedule), t)
    return ode_euler_step(x, t, k_next, (model(x, t) + end) / 2, schedule)


def heun_second_call_at_x_t(model, x, t, k_next, schedule):
    return ode_euler_step(x, t, k_next, (model(x, t) + model(x, k_next)) / 2, schedule)


def heun_from_the_euler_point(model, x, t, k_next, schedule):  # redoes the step from the wrong place
    euler = ode_euler_step(x, t, k_next, model(x, t), schedule)
    return euler + 0.1 * (model(euler, k_next) - model(x, t))


def u_step(score_factor=0.5, span=None, variance=False, sign=1.0):
    def step(x, t, k_next, eps, schedule):
        beta, alpha_bar = schedule.betas[t].item(), schedule.alpha_bar[t].item()
        score = -sign * eps / ((1 - alpha_bar) if variance else math.sqrt(1 - alpha_bar))
        return x + (t - k_next if span is None else span(t, k_next)) * (0.5 * beta * x + score_factor * beta * score)

    return step


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch07.check_heun_step, heun_euler_only, "that is Euler's step"),
        (ch07.check_heun_step, heun_end_slope, "at the end only"),
        (ch07.check_heun_step, heun_added, "averaged, not added"),
        (ch07.check_heun_step, heun_second_call_at_t, "call the model at k_next"),
        (ch07.check_heun_step, heun_second_call_at_x_t, "not at x_t"),
        (ch07.check_heun_step, heun_from_the_euler_point, "redo the step from x_t with the average"),
        (ch07.check_heun_step, lambda m, x, t, tp, s: x.item(), "your code raised"),
        (ch07.check_euler_step_in_u, u_step(score_factor=1.0), "reverse SDE"),
        (ch07.check_euler_step_in_u, u_step(span=lambda t, tp: 1), "spans k - k_next timesteps"),
        (ch07.check_euler_step_in_u, u_step(span=lambda t, tp: tp - t), "mind the direction"),
        (ch07.check_euler_step_in_u, u_step(variance=True), "not its variance"),
        (ch07.check_euler_step_in_u, u_step(sign=-1.0), "score's sign"),
        (ch07.check_euler_step_in_u, u_step(span=lambda t, tp: t - max(tp, 0)), "spans k + 1 timesteps"),
        (ch07.check_euler_step_in_u, u_step(score_factor=0.25), "one Euler step of (7.6)"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize(
    "checker, answer, phrase",
    [
        (ch07.check_clock_ratio, 1 / reference.SOLUTION_7_3, "other way round"),
        (ch07.check_clock_ratio, 1.0, "same step"),
        (ch07.check_clock_ratio, 3.0, "not what the checker measures"),
        (ch07.check_clock_ratio, "0.6", "a number"),
        (ch07.check_flow_factor, 1 / reference.SOLUTION_7_4, "other way"),
        (ch07.check_flow_factor, 0.25, "much larger"),
        (ch07.check_flow_factor, reference.SOLUTION_7_4**2, "mind the 1/2"),
        (ch07.check_flow_factor, 0.5, "separate the variables"),
        (ch07.check_flow_factor, "0.24", "a number"),
    ],
)
def test_wrong_numbers_get_their_hint(checker, answer, phrase):
    assert phrase in wrong_message(checker(answer))


@pytest.mark.parametrize(
    "checker, wrong",
    [
        (ch07.check_heun_step, heun_from_the_euler_point),
        (ch07.check_euler_step_in_u, u_step(score_factor=0.25)),
        (ch07.check_flow_factor, 0.5),
    ],
)
def test_hints_give_the_idea_first_and_the_formula_from_the_third_try(checker, wrong):
    first, second, third = hint_stages(checker, wrong)
    assert "The formula" not in first and "The formula" not in second
    assert "The formula" in third


def test_the_flow_factor_is_what_the_heun_solver_computes():
    """Exercise 7.4's answer, checked by solving the ODE numerically between sigma = 2 and 0."""
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
    assert abs(sigma_start - 2) < 0.01 and abs(x0.item() - reference.SOLUTION_7_4) < 2e-3
