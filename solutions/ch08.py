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
