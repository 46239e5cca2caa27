"""Reference solutions of chapter 08's exercises (try first!). Checked by tests/test_exercises_ch08.py."""

import math

import torch

from diffedu.flow import TIME_SCALE, eps_from_velocity, flow_time_from_alpha_bar


def solution_noise_from_flow(velocity_model, x_vp: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    flow_time = float(flow_time_from_alpha_bar(alpha_bar))  # eq. (8.6): t = s / (a + s)
    y = x_vp * (1 - flow_time) / math.sqrt(alpha_bar)  # the flow's point: x_vp / (a + s), as 1 - t = a / (a + s)
    velocity = velocity_model(y, torch.full((x_vp.shape[0],), flow_time * TIME_SCALE))
    return eps_from_velocity(y, velocity, flow_time)  # eq. (8.7): the eps of y, which is the eps of x_vp


SOLUTION_8_2 = 1.12  # Euler on DDIM's 10-step grid lands about 12% farther from the exact ODE than on the even grid


def solution_two_step_target(teacher, x_t: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    t_mid = (t + t_next) / 2  # (B,)
    first, second, whole = ((b - a).view(-1, 1, 1, 1) for a, b in ((t, t_mid), (t_mid, t_next), (t, t_next)))
    x_mid = x_t + first * teacher(x_t, t * TIME_SCALE)  # the teacher's first Euler step (8.5)
    x_next = x_mid + second * teacher(x_mid, t_mid * TIME_SCALE)  # and its second
    return (x_next - x_t) / whole  # eq. (8.11): one step from x_t that lands on x_next


def solution_total_derivative_by_differences(u_fn, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
                                             velocity: torch.Tensor) -> torch.Tensor:
    h = 1e-4  # a central difference along the tangent (v, 0, 1) of eq. (8.21): z and t move, r stays
    return (u_fn(z + h * velocity, r, t + h) - u_fn(z - h * velocity, r, t - h)) / (2 * h)


def solution_gaussian_average_velocity(z: torch.Tensor, r: float, t: float, mu: float, s: float) -> torch.Tensor:
    def mean_and_std(time):  # the marginal of (8.1) for x_0 ~ N(mu, s^2): N((1 - time) mu, (1 - time)^2 s^2 + time^2)
        return (1 - time) * mu, math.sqrt((1 - time) ** 2 * s**2 + time**2)

    (m_t, sigma_t), (m_r, sigma_r) = mean_and_std(t), mean_and_std(r)
    z_r = m_r + sigma_r / sigma_t * (z - m_t)  # the flow keeps each point's z-score
    return (z - z_r) / (t - r)  # eq. (8.19) solved for u
