"""Running a sampler's steps: the machinery around the math (progress bar, NaN checks, capture).

A sampler in this library is a generator of steps (samplers.ddim_states, sde.heun_states,
flow.flow_states, ...): it yields one StepOutput per step and knows nothing of progress bars or
recording. `run_steps` drives one and keeps what the caller asked for:

    run = run_steps(x_T, ddim_states(model, x_T, schedule, timesteps), total=len(timesteps), capture_every=1)
    run.samples                     # the result, x_0
    run.trajectory[i]               # x at run.timesteps[i] (x_T first, the result last)
    run.pred_x0_trajectory[i]       # the estimate of x_0 made from that same x
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from diffedu.course.checks import check_finite
from diffedu.course.progress import tqdm

CHECK_EVERY = 10  # look for NaN/inf every this many steps (each look waits for a GPU to finish)
END = -1  # the timestep recorded with the result: -1 is "clean data" (alpha_bar = 1, flow time 0)


@dataclass
class SampleOutput:
    """A finished sampling run. When captured, index i of the three lists describes one moment:
    the time timesteps[i], the sample x there (trajectory[i], a CPU copy) and the estimate of x_0 made
    from that x (pred_x0_trajectory[i]). The first entry is the start x_T, the last is the result
    (time END, where the estimate of x_0 is the result itself)."""

    samples: torch.Tensor
    timesteps: list = field(default_factory=list)
    trajectory: list[torch.Tensor] = field(default_factory=list)
    pred_x0_trajectory: list[torch.Tensor] = field(default_factory=list)

    def record(self, t, x: torch.Tensor, pred_x0: torch.Tensor) -> None:
        self.timesteps.append(t)
        self.trajectory.append(x.detach().cpu())
        self.pred_x0_trajectory.append(pred_x0.detach().cpu())


def run_steps(x: torch.Tensor, steps: Iterable, total: int, *, capture_every: int | None = None, progress: bool = True,
              desc: str = "sampling", on_step: Callable[[], None] | None = None) -> SampleOutput:
    """Drive a generator of steps from the start x (x_T): each step has .time (where it started),
    .prev_sample (x at the next time) and .pred_x0 (the estimate made there). Every CHECK_EVERY steps
    and at the end, x is checked for NaN/inf.

    Args:
        x: the start, x_T (B, ...).
        steps: the sampler's generator, started from the same x.
        total: how many steps it takes (for the progress bar).
        capture_every: record every this many steps (the first, and the result, always) in the output.
        progress: show a progress bar labelled `desc`.
        on_step: called after every step (e.g. to advance a bar that spans many batches).
    """
    out = SampleOutput(samples=x)
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    try:
        for i, step in enumerate(steps):
            if capture_every and i % capture_every == 0:
                out.record(step.time, x, step.pred_x0)
            x = step.prev_sample
            if (i + 1) % CHECK_EVERY == 0 or i + 1 == total:
                check_finite("x_t", x)
            bar.update()
            if on_step is not None:
                on_step()
    finally:
        bar.close()
    if capture_every:
        out.record(END, x, x)
    out.samples = x
    return out
