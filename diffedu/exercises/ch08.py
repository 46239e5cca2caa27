"""Exercises of chapter 08 (flow matching, few-step generation): a flow model read as a noise predictor,
which time grid a sampler visits, and the distillation target. See diffedu/exercises/__init__.py for how
checkers work."""

from __future__ import annotations

import math

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor, same
from diffedu.flow import TIME_SCALE

SHAPE = (4, 1, 3, 3)  # a small batch of "images"


def _fake_velocity_model(x: torch.Tensor, time_input: torch.Tensor) -> torch.Tensor:
    """A velocity "network" v(x, t * 1000) that depends on x and, nonlinearly, on its time input (B,)."""
    if not isinstance(time_input, torch.Tensor) or time_input.shape != (x.shape[0],):
        raise ValueError(f"the model's time input must be a tensor of shape ({x.shape[0]},), one time per image, "
                         f"got {time_input!r}"[:200])
    t = (time_input.double() / TIME_SCALE).view(-1, 1, 1, 1)
    return x.double() * (1 + t) - 0.5 * t**2 + 0.1 * torch.sin(3 * x.double())


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*SHAPE, generator=gen, dtype=torch.float64), torch.randn(*SHAPE, generator=gen, dtype=torch.float64)


def _noise_from_flow(x_vp, alpha_bar, rescale=True, time_scale=TIME_SCALE, flow_time=None, estimate="eps"):
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    t = s / (a + s) if flow_time is None else flow_time
    y = x_vp / (a + s) if rescale else x_vp
    v = _fake_velocity_model(y, torch.full((x_vp.shape[0],), t * time_scale, dtype=torch.float64))
    return {"eps": y + (1 - t) * v, "x0": y - t * v, "v": v}[estimate]


@exercise("8.1")
def check_noise_from_flow(noise_from_flow) -> None:
    """Exercise 8.1: a velocity model's noise prediction at a VP sample x_vp, through (8.6) and (8.7)."""
    x_vp, _ = _batch(1)
    alpha_bar = 0.3
    result = expect_tensor(noise_from_flow(_fake_velocity_model, x_vp, alpha_bar), SHAPE, "eps").double()
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    mistakes = [
        (_noise_from_flow(x_vp, alpha_bar, rescale=False),
         "the velocity model knows only the flow's path: divide x_vp by a + s first, (8.6), and answer in those coordinates"),
        (_noise_from_flow(x_vp, alpha_bar, time_scale=1.0),
         "the network's time input is the flow time times TIME_SCALE (1000), as in every call of chapter 08"),
        (_noise_from_flow(x_vp, alpha_bar, flow_time=s), "the flow time is not s itself: it is where (8.6) puts x_vp"),
        (_noise_from_flow(x_vp, alpha_bar, flow_time=1 - alpha_bar), "the flow time is not 1 - alpha_bar: see (8.6)"),
        (_noise_from_flow(x_vp, alpha_bar, flow_time=a / (a + s)),
         "that is 1 - t: the flow time s / (a + s) grows with the noise (t = 1 is pure noise)"),
        (_noise_from_flow(x_vp, alpha_bar, estimate="x0"), "that is the estimate of x_0; (8.7) also gives eps"),
        (_noise_from_flow(x_vp, alpha_bar, estimate="v"), "that is the velocity itself; (8.7) turns it into eps"),
    ]
    for candidate, hint in mistakes:
        if same(result, candidate, atol=1e-6, rtol=1e-5):
            raise ExerciseError(hint)
    expect_close(result, _noise_from_flow(x_vp, alpha_bar),
                 "find the flow time and the flow's point that x_vp is (8.6), ask the model for the velocity there, and "
                 "turn it into eps with (8.7). The eps of the flow's point is the eps of x_vp", atol=1e-6, rtol=1e-5,
                 formula="t = s / (a + s); y = x_vp / (a + s); v = model(y, torch.full((B,), t * TIME_SCALE)); "
                         "eps = y + (1 - t) * v")


def grid_ratio(num_points: int = 2000, steps: int = 10, end_at_zero: bool = True) -> float:
    """Exercise 8.2's measurement on the exact mixture flow: mean distance to the exact ODE's end point with
    Euler on DDIM's grid (the flow times of `steps` trailing code timesteps of the cosine schedule, then 0),
    over the same with Euler on the evenly spaced grid. Both start from the same noise at their first time
    (DDIM's is 0.996, not 1: the difference does not show in the ratio)."""
    from diffedu.course.device import randn
    from diffedu.flow import flow_solve, flow_time_from_alpha_bar, flow_times
    from diffedu.samplers import ddim_timesteps
    from diffedu.schedules import make_schedule
    from diffedu.toy import exact_velocity, make_toy_mixture

    mixture, schedule = make_toy_mixture(), make_schedule("cosine")
    start = randn((num_points, 2), torch.Generator().manual_seed(7)).double()

    def exact_model(x, time_input):
        return exact_velocity(mixture, x, time_input[0].item() / TIME_SCALE)

    reference = flow_solve(exact_model, start.clone(), flow_times(200), "heun")
    ddim_grid = flow_time_from_alpha_bar(schedule.alpha_bar[ddim_timesteps(1000, steps, "trailing")].double())
    if end_at_zero:
        ddim_grid = torch.cat([ddim_grid, torch.zeros(1, dtype=torch.float64)])
    on_ddim_grid = flow_solve(exact_model, start.clone(), ddim_grid, "euler")
    on_even_grid = flow_solve(exact_model, start.clone(), flow_times(steps), "euler")
    return ((on_ddim_grid - reference).norm(dim=1).mean() / (on_even_grid - reference).norm(dim=1).mean()).item()


_MEASURED: dict = {}


def _measured(**options) -> float:
    key = tuple(sorted(options.items()))
    if key not in _MEASURED:
        _MEASURED[key] = grid_ratio(**options)
    return _MEASURED[key]


@exercise("8.2")
def check_grid_ratio(answer) -> None:
    """Exercise 8.2: distance(Euler on DDIM's 10-step grid) / distance(Euler on the even grid), measured."""
    answer = expect_number(answer, "the ratio of the two mean distances")
    expected = _measured()
    if abs(answer - expected) <= 0.03 * expected:  # the learner's points differ from the checker's
        return
    if abs(1 / answer - expected) <= 0.03 * expected:
        raise ExerciseError("that is the ratio the other way round: DDIM's grid on top, the even grid below")
    if abs(answer - 1) < 0.005:
        raise ExerciseError("a ratio of 1: did both runs use the same grid? One is flow_times(10), the other DDIM's")
    if answer > 3:
        raise ExerciseError("the DDIM-grid run seems to stop short of the data: its grid must end at t = 0")
    raise ExerciseError("not what the checker measures: both runs start from `start`, take 10 Euler steps of the exact "
                        "flow with flow_solve, and are compared with `reference` by (x - reference).norm(dim=1).mean()")


def _two_step(teacher, x_t, t, t_next, second_at="mid", second_time="mid", time_scale=TIME_SCALE, span=None, steps=2):
    t_mid = (t + t_next) / 2
    v1 = teacher(x_t, t * time_scale)
    if steps == 1:
        x_next = x_t + (t_next - t).view(-1, 1, 1, 1) * v1
    else:
        x_mid = x_t + (t_mid - t).view(-1, 1, 1, 1) * v1
        point = {"mid": x_mid, "start": x_t}[second_at]
        time = {"mid": t_mid, "start": t, "end": t_next}[second_time]
        x_next = x_mid + (t_next - t_mid).view(-1, 1, 1, 1) * teacher(point, time * time_scale)
    span = (t_next - t) if span is None else span
    return (x_next - x_t) / span.view(-1, 1, 1, 1)


@exercise("8.3")
def check_two_step_target(two_step_target) -> None:
    """Exercise 8.3: the distillation target (8.11), checked against diffedu.distill.two_step_target."""
    from diffedu.distill import two_step_target as library_target

    x_t, _ = _batch(3)
    t = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)  # (B,): one step of a 4-step student's grid each
    t_next = t - 0.25
    result = expect_tensor(two_step_target(_fake_velocity_model, x_t, t, t_next), SHAPE, "the target velocity").double()
    right = _two_step(_fake_velocity_model, x_t, t, t_next)
    mistakes = [
        (_two_step(_fake_velocity_model, x_t, t, t_next, steps=1),
         "that is the teacher's velocity at x_t: the target comes from two teacher steps, through the midpoint"),
        (_two_step(_fake_velocity_model, x_t, t, t_next, second_at="start"),
         "the teacher's second velocity is read where its first step landed, at the midpoint, not at x_t"),
        (_two_step(_fake_velocity_model, x_t, t, t_next, second_time="start"),
         "the teacher's second velocity belongs to the midpoint's time (t + t_next) / 2, not to t"),
        (_two_step(_fake_velocity_model, x_t, t, t_next, second_time="end"),
         "the teacher's second velocity belongs to the midpoint's time (t + t_next) / 2, not to t_next"),
        (_two_step(_fake_velocity_model, x_t, t, t_next, time_scale=1.0),
         "the teacher's time input is the flow time times TIME_SCALE (1000), as the network was trained"),
        (-right, "check the sign: the student steps x_t + (t_next - t) v, and t_next - t is negative"),
        (right * (t_next - t).view(-1, 1, 1, 1), "that is the displacement; the target is a velocity: divide by t_next - t"),
        (2 * right, "the student's one step spans the whole interval from t to t_next, both teacher steps together"),
    ]
    for candidate, hint in mistakes:
        if same(result, candidate, atol=1e-6, rtol=1e-5):
            raise ExerciseError(hint)
    expect_close(result, library_target(_fake_velocity_model, x_t, t, t_next),
                 "let the teacher take two Euler steps (8.5), t -> midpoint -> t_next, then find the one velocity that "
                 "covers the same distance in one step", atol=1e-5, rtol=1e-4,
                 formula="t_mid = (t + t_next) / 2; x_mid = x_t + (t_mid - t) v(x_t, t); x_next = x_mid + (t_next - t_mid) "
                         "v(x_mid, t_mid); target = (x_next - x_t) / (t_next - t), times as (B, 1, 1, 1) and v called "
                         "with t * TIME_SCALE")


def _fake_average_velocity(z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """An average-velocity "network" u(z, r, t) (B, 1, 3, 3), nonlinear in all three inputs, float64."""
    r, t = r.view(-1, 1, 1, 1), t.view(-1, 1, 1, 1)
    return torch.sin(z) * (1 + t**2) + 0.3 * z * r - 0.2 * (t - r) * z**2 + t


def _differences_target(z, r, t, velocity, z_moves=True, t_moves=True, r_moves=False, derivative_only=False):
    h = 1e-4
    dz, dt, dr = (h if moves else 0.0 for moves in (z_moves, t_moves, r_moves))
    du_dt = (_fake_average_velocity(z + dz * velocity, r + dr, t + dt)
             - _fake_average_velocity(z - dz * velocity, r - dr, t - dt)) / (2 * h)
    if derivative_only:
        return du_dt
    return velocity - (t - r).view(-1, 1, 1, 1) * du_dt


@exercise("8.4")
def check_total_derivative_by_differences(total_derivative_by_differences) -> None:
    """Exercise 8.4: the total derivative du/dt of (8.21) by central differences, checked against the JVP that
    diffedu.meanflow.meanflow_target uses."""
    z, velocity = _batch(4)
    r = torch.tensor([0.0, 0.2, 0.5, 0.1], dtype=torch.float64)
    t = torch.tensor([1.0, 0.7, 0.6, 0.9], dtype=torch.float64)
    result = expect_tensor(total_derivative_by_differences(_fake_average_velocity, z, r, t, velocity), SHAPE, "du/dt").double()
    mistakes = [
        (_differences_target(z, r, t, velocity, z_moves=False, derivative_only=True),
         "d/dt in (8.21) is taken along the trajectory: as t moves, z_t moves too, with the velocity v; move z by +-h v"),
        (_differences_target(z, r, t, velocity, t_moves=False, derivative_only=True),
         "u depends on t directly as well (the network sees t): move t by +-h together with z"),
        (_differences_target(z, r, t, velocity, r_moves=True, derivative_only=True),
         "r is the fixed end of the interval: only z and t move (the tangent is (v, 0, 1))"),
        (_differences_target(z, r, t, velocity),
         "that is the whole target v - (t - r) du/dt of (8.20); return the derivative du/dt alone"),
        (_fake_average_velocity(z, r, t), "that is u itself; the exercise asks how fast u changes along the trajectory"),
    ]
    for candidate, hint in mistakes:
        if same(result, candidate, atol=1e-6, rtol=1e-5):
            raise ExerciseError(hint)
    _, expected = torch.func.jvp(_fake_average_velocity, (z, r, t), (velocity, torch.zeros_like(r), torch.ones_like(t)))
    expect_close(result, expected,
                 "differentiate u along the path: a small step h moves z by h v and t by h, r stays; use a central "
                 "difference (h about 1e-4)", atol=1e-5, rtol=1e-4,
                 formula="du_dt = (u_fn(z + h v, r, t + h) - u_fn(z - h v, r, t - h)) / (2 h)")


def _gaussian_velocity(x, time: float, mu: float, s: float):
    """The marginal velocity (8.4) for data N(mu, s^2): v(x, t) = -mu + (sigma_t' / sigma_t) (x - (1 - t) mu)."""
    sigma = math.sqrt((1 - time) ** 2 * s**2 + time**2)
    return -mu + ((time - (1 - time) * s**2) / sigma**2) * (x - (1 - time) * mu)


def gaussian_flow_map(z: torch.Tensor, r: float, t: float, mu: float, s: float, steps: int = 2000) -> torch.Tensor:
    """Where the marginal flow of data N(mu, s^2) carries z from time t to r, by RK4 on its exact velocity."""
    def velocity(x, time):
        return _gaussian_velocity(x, time, mu, s)

    x, h = z.double(), (r - t) / steps
    for i in range(steps):
        time = t + i * h
        k1 = velocity(x, time)
        k2 = velocity(x + h / 2 * k1, time + h / 2)
        k3 = velocity(x + h / 2 * k2, time + h / 2)
        k4 = velocity(x + h * k3, time + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def _gaussian_average(z, r, t, mu, s, keep="std", instant=False, sign=1):
    m_t, m_r = (1 - t) * mu, (1 - r) * mu
    spread = {"std": lambda time: math.sqrt((1 - time) ** 2 * s**2 + time**2), "noise_only": lambda time: time,
              "variance": lambda time: (1 - time) ** 2 * s**2 + time**2}[keep]
    if instant:
        return _gaussian_velocity(z, t, mu, s)
    x_r = m_r + spread(r) / spread(t) * (z - m_t)
    return sign * (z - x_r) / (t - r)


@exercise("8.5")
def check_gaussian_average_velocity(gaussian_average_velocity) -> None:
    """Exercise 8.5: the exact average velocity (8.18) when the data are N(mu, s^2), against numerical integration."""
    z = torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)
    mu, s = 0.7, 0.4
    for r, t in ((0.2, 0.9), (0.5, 0.6), (0.0, 1.0)):  # (at 0 and 1 several mistakes coincide: checked last)
        result = expect_tensor(gaussian_average_velocity(z, r, t, mu, s), (11,), "u").double()
        mistakes = [
            (_gaussian_average(z, r, t, mu, s, instant=True),
             "that is the velocity at time t; the average over [r, t] differs, because the flow's speed changes on the way"),
            (_gaussian_average(z, r, t, mu, s, sign=-1), "check the sign: z_r = z_t - (t - r) u, (8.19)"),
            (_gaussian_average(z, r, t, mu, s, keep="noise_only"),
             "the spread at time t has two parts, the data's (1 - t) s and the noise's t, added in quadrature"),
            (_gaussian_average(z, r, t, mu, s, keep="variance"),
             "scale by the ratio of standard deviations, not of variances: z-scores divide by the std"),
        ]
        for candidate, hint in mistakes:
            if same(result, candidate, atol=1e-6, rtol=1e-5):
                raise ExerciseError(f"at r = {r}, t = {t}: {hint}")
        expected = (z - gaussian_flow_map(z, r, t, mu, s)) / (t - r)
        expect_close(result, expected,
                     f"at r = {r}, t = {t}: the flow of a Gaussian keeps each point's place in the distribution (its "
                     "z-score); find where z lands at time r, then use (8.19)", atol=1e-6, rtol=1e-5,
                     formula="m_t = (1 - t) mu, sigma_t = sqrt((1 - t)^2 s^2 + t^2); z_r = m_r + (sigma_r / sigma_t) (z - m_t); "
                             "u = (z - z_r) / (t - r)")
