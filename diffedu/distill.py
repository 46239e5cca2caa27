"""Progressive distillation of a flow (chapter 08): a student learns to take in one Euler step what
its teacher takes in two, so each round halves the number of steps (Salimans & Ho 2022, here in
the velocity form of eq. 8.5). The first teacher runs with classifier-free guidance w; the student
sees only the label, so the guidance is distilled into it too (Meng et al. 2023).

A student of N steps samples on the grid t_i = i / N, i = N, ..., 0. For a grid time t = t_i and
t' = t_{i-1}, with the teacher's midpoint t_mid = (t + t') / 2:

    x_mid = x_t + (t_mid - t) v_teacher(x_t, t)                 two Euler steps (8.5) of the teacher
    x'    = x_mid + (t' - t_mid) v_teacher(x_mid, t_mid)
    v_target = (x' - x_t) / (t' - t)                            the one step that lands on x', eq. (8.11)
    L(theta) = E || v_student(x_t, t, y) - v_target ||^2          eq. (8.12)

x_t is the path (8.1) at a grid time, from real digits and fresh noise. The student starts as a copy
of its teacher; after training it becomes the teacher of the next round, with half the steps.
"""

from __future__ import annotations

import torch

from diffedu.course.checks import broadcast_to_batch
from diffedu.course.device import randn
from diffedu.flow import TIME_SCALE, euler_step, flow_path
from diffedu.guidance import guided_predictor


def student_times(student_steps: int, generator: torch.Generator | None, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of `batch` samples, a random step of the student's grid: its start t and end t' (B,), t > t'."""
    if student_steps < 1:
        raise ValueError(f"student_steps must be at least 1, got {student_steps}")
    i = torch.randint(1, student_steps + 1, (batch,), generator=generator)  # (B,) in 1..N
    return i / student_steps, (i - 1) / student_steps


@torch.no_grad()
def two_step_target(teacher, x_t: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """v_target of eq. (8.11): the velocity of the single step from x_t at t to where two teacher Euler
    steps (via the midpoint) land at t_next. teacher(x, t * TIME_SCALE) -> v; t, t_next (B,)."""
    t_mid = (t + t_next) / 2
    x_mid = euler_step(x_t, t, t_mid, teacher(x_t, t * TIME_SCALE).float())
    x_next = euler_step(x_mid, t_mid, t_next, teacher(x_mid, t_mid * TIME_SCALE).float())
    return (x_next - x_t) / broadcast_to_batch(t_next - t, x_t)


def distillation_loss_fn(teacher, student_steps: int, guidance: float = 1.0):
    """loss_fn(student, (images, labels), generator) for `diffedu.train.train`: eq. (8.12) for a student of
    `student_steps` steps, with the conditional teacher guided at w = `guidance` (eq. 3.3)."""
    teacher.eval().requires_grad_(False)

    def loss_fn(student, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        t, t_next = (time.to(images.device) for time in student_times(student_steps, generator, images.shape[0]))
        x_t = flow_path(images, randn(images.shape, generator, images.device), t)
        target = two_step_target(guided_predictor(teacher, labels, guidance), x_t, t, t_next)
        velocity_pred = student(x_t, t * TIME_SCALE, labels)
        return (velocity_pred.float() - target).pow(2).flatten(1).mean(1).mean()

    return loss_fn
