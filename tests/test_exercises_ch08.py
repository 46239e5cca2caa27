"""Chapter 08 checkers: stub -> not attempted, wrong -> hint (the idea first, the formula from the third try),
reference -> correct."""

import math

import pytest
import torch

from diffedu.exercises import ch08
from diffedu.flow import TIME_SCALE, eps_from_velocity, flow_time_from_alpha_bar, velocity_from_eps
from diffedu.samplers import ddim_step
from diffedu.schedules import make_schedule
from solutions import ch08 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch08.check_noise_from_flow(stub), ch08.check_grid_ratio(...), ch08.check_two_step_target(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch08.check_noise_from_flow(reference.solution_noise_from_flow)) == "Exercise 8.1: correct"
    assert ch08.check_grid_ratio(reference.SOLUTION_8_2)
    assert ch08.check_two_step_target(reference.solution_two_step_target)
    # float32 is fine
    assert ch08.check_noise_from_flow(lambda m, x, a: reference.solution_noise_from_flow(m, x, a).float())


def test_the_library_conversions_give_the_same_noise():
    """8.1's answer is (8.6) then (8.7) as the library writes them."""
    x_vp = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alpha_bar = 0.3
    t = flow_time_from_alpha_bar(alpha_bar).item()
    y = x_vp / (math.sqrt(alpha_bar) + math.sqrt(1 - alpha_bar))
    v = ch08._fake_velocity_model(y, torch.full((4,), t * TIME_SCALE))
    assert torch.allclose(reference.solution_noise_from_flow(ch08._fake_velocity_model, x_vp, alpha_bar), eps_from_velocity(y, v, t))


def test_ddim_with_the_converted_flow_is_euler_on_the_flow():
    """What 8.1 is for: DDIM on a velocity model read as a noise predictor is one Euler step of the flow (section 2)."""
    schedule = make_schedule("cosine").to(dtype=torch.float64)
    x = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k, k_next = 700, 400
    eps = reference.solution_noise_from_flow(ch08._fake_velocity_model, x, schedule.alpha_bar[k].item())
    ddim = ddim_step(x, k, k_next, eps, schedule, eta=0.0, clip_x0=None).prev_sample
    scale, scale_next = (schedule.alpha_bar[i].sqrt() + (1 - schedule.alpha_bar[i]).sqrt() for i in (k, k_next))
    t, t_next = (flow_time_from_alpha_bar(schedule.alpha_bar[i]).item() for i in (k, k_next))
    y = x / scale
    v = ch08._fake_velocity_model(y, torch.full((4,), t * TIME_SCALE))
    assert torch.allclose(velocity_from_eps(y, eps, t), v)
    assert torch.allclose((y + (t_next - t) * v) * scale_next, ddim, atol=1e-10)


def test_the_measured_ratio_holds_with_the_full_mode_number_of_points():
    assert abs(ch08.grid_ratio(num_points=10_000) - reference.SOLUTION_8_2) < 0.02
    assert abs(ch08.grid_ratio() - reference.SOLUTION_8_2) < 0.02


def noise_wrong(rescale=True, time_scale=TIME_SCALE, flow_time=None, estimate="eps"):
    def answer(model, x_vp, alpha_bar):
        a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
        t = s / (a + s) if flow_time is None else flow_time(a, s, alpha_bar)
        y = x_vp / (a + s) if rescale else x_vp
        v = model(y, torch.full((x_vp.shape[0],), t * time_scale))
        return {"eps": y + (1 - t) * v, "x0": y - t * v, "v": v, "half": y + 0.5 * v}[estimate]

    return answer


def target_wrong(**options):
    return lambda teacher, x_t, t, t_next: ch08._two_step(teacher, x_t, t, t_next, **options)


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch08.check_noise_from_flow, noise_wrong(rescale=False), "divide x_vp by a + s"),
        (ch08.check_noise_from_flow, noise_wrong(time_scale=1.0), "TIME_SCALE"),
        (ch08.check_noise_from_flow, noise_wrong(flow_time=lambda a, s, ab: s), "not s itself"),
        (ch08.check_noise_from_flow, noise_wrong(flow_time=lambda a, s, ab: 1 - ab), "not 1 - alpha_bar"),
        (ch08.check_noise_from_flow, noise_wrong(flow_time=lambda a, s, ab: a / (a + s)), "that is 1 - t"),
        (ch08.check_noise_from_flow, noise_wrong(estimate="x0"), "estimate of x_0"),
        (ch08.check_noise_from_flow, noise_wrong(estimate="v"), "the velocity itself"),
        (ch08.check_noise_from_flow, noise_wrong(estimate="half"), "ask the model for the velocity there"),
        (ch08.check_noise_from_flow, lambda m, x, a: m(x, 0.5), "time input must be a tensor"),
        (ch08.check_two_step_target, target_wrong(steps=1), "two teacher steps"),
        (ch08.check_two_step_target, target_wrong(second_at="start"), "not at x_t"),
        (ch08.check_two_step_target, target_wrong(second_time="start"), "not to t"),
        (ch08.check_two_step_target, target_wrong(second_time="end"), "not to t_next"),
        (ch08.check_two_step_target, target_wrong(time_scale=1.0), "TIME_SCALE"),
        (ch08.check_two_step_target, lambda m, x, t, tn: -reference.solution_two_step_target(m, x, t, tn), "check the sign"),
        (ch08.check_two_step_target, target_wrong(span=torch.ones(4, dtype=torch.float64)), "displacement"),
        (ch08.check_two_step_target, lambda m, x, t, tn: 2 * reference.solution_two_step_target(m, x, t, tn), "whole interval"),
        (ch08.check_two_step_target, target_wrong(span=torch.full((4,), -0.5, dtype=torch.float64)), "two Euler steps (8.5)"),
        (ch08.check_two_step_target, lambda m, x, t, tn: x + (tn - t) * m(x, t * 1000), "your code raised"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize(
    "answer, phrase",
    [
        (1 / reference.SOLUTION_8_2, "other way round"),
        (1.0, "same grid"),
        (ch08.grid_ratio(end_at_zero=False), "end at t = 0"),
        (1.5, "not what the checker measures"),
        ("1.1", "a number"),
    ],
)
def test_wrong_ratios_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch08.check_grid_ratio(answer))


@pytest.mark.parametrize(
    "checker, wrong",
    [
        (ch08.check_noise_from_flow, noise_wrong(estimate="half")),
        (ch08.check_two_step_target, target_wrong(span=torch.full((4,), -0.5, dtype=torch.float64))),
    ],
)
def test_hints_give_the_idea_first_and_the_formula_from_the_third_try(checker, wrong):
    first, second, third = hint_stages(checker, wrong)
    assert "The formula" not in first and "The formula" not in second
    assert "The formula" in third


def test_one_step_exercises_not_attempted_and_references_pass(capsys):
    for result in (ch08.check_total_derivative_by_differences(stub), ch08.check_gaussian_average_velocity(stub)):
        assert result.status == "not attempted" and not result
    assert capsys.readouterr().out == ""
    assert ch08.check_total_derivative_by_differences(reference.solution_total_derivative_by_differences)
    assert ch08.check_gaussian_average_velocity(reference.solution_gaussian_average_velocity)
    assert ch08.check_gaussian_average_velocity(lambda *a: reference.solution_gaussian_average_velocity(*a).float())


def test_the_gaussian_reference_integrator_is_exact_enough():
    """8.5's checker integrates the exact Gaussian velocity by RK4; at r = t - small it must be the velocity itself."""
    z = torch.linspace(-2, 2, 5, dtype=torch.float64)
    u = (z - ch08.gaussian_flow_map(z, 0.5 - 1e-4, 0.5, 0.7, 0.4, steps=10)) / 1e-4
    assert torch.allclose(u, ch08._gaussian_average(z, 0.5, 0.5, 0.7, 0.4, instant=True), atol=1e-3)
    z_1 = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_0 = ch08.gaussian_flow_map(z_1, 0.0, 1.0, 0.7, 0.4, steps=200)  # noise carried to data: N(0.7, 0.4^2)
    assert abs(x_0.mean() - 0.7) < 0.01 and abs(x_0.std() - 0.4) < 0.01


def meanflow_wrong(**options):
    options.setdefault("derivative_only", True)
    return lambda u_fn, z, r, t, v: ch08._differences_target(z, r, t, v, **options)


def gaussian_wrong(**options):
    return lambda z, r, t, mu, s: ch08._gaussian_average(z, r, t, mu, s, **options)


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch08.check_total_derivative_by_differences, meanflow_wrong(z_moves=False), "z_t moves too"),
        (ch08.check_total_derivative_by_differences, meanflow_wrong(t_moves=False), "depends on t directly"),
        (ch08.check_total_derivative_by_differences, meanflow_wrong(r_moves=True), "fixed end"),
        (ch08.check_total_derivative_by_differences, meanflow_wrong(derivative_only=False), "the derivative du/dt alone"),
        (ch08.check_total_derivative_by_differences, lambda u_fn, z, r, t, v: u_fn(z, r, t), "that is u itself"),
        (ch08.check_total_derivative_by_differences,
         lambda u_fn, z, r, t, v: (u_fn(z + 0.1 * v, r, t + 0.1) - u_fn(z, r, t)) / 0.1, "central difference"),
        (ch08.check_gaussian_average_velocity, gaussian_wrong(instant=True), "velocity at time t"),
        (ch08.check_gaussian_average_velocity, gaussian_wrong(sign=-1), "check the sign"),
        (ch08.check_gaussian_average_velocity, gaussian_wrong(keep="noise_only"), "in quadrature"),
        (ch08.check_gaussian_average_velocity, gaussian_wrong(keep="variance"), "not of variances"),
        (ch08.check_gaussian_average_velocity, lambda z, r, t, mu, s: (z - mu) / (t - r), "z-score"),
    ],
)
def test_one_step_wrong_answers_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize(
    "checker, wrong",
    [
        (ch08.check_total_derivative_by_differences, meanflow_wrong(z_moves=False)),
        (ch08.check_gaussian_average_velocity, lambda z, r, t, mu, s: (z - mu) / (t - r)),
    ],
)
def test_one_step_hints_are_staged(checker, wrong):
    first, second, third = hint_stages(checker, wrong)
    assert "The formula" not in first
    if "z_t moves too" not in first:  # a named mistake keeps its own hint; a general one ends with the formula
        assert "The formula" in third
