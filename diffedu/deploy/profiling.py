"""Where the time of sampling goes, and the physical limit on it (chapter 11).

    a convolution's FLOPs:  F_conv = 2 C_in C_out k^2 H W                            eq. (11.1)
    roofline:   T >= N x calls x F / P                                               eq. (11.2)
                (N images, `calls` network calls each, F FLOPs per image and call, P the
                FLOP/s the CPU reaches on a large matrix product)
    batching:   t(b) = t_0 + b t_1,   throughput(b) = b / t(b) -> 1 / t_1            eq. (11.3)

F is counted by PyTorch's FlopCounterMode (2 FLOPs per multiply-add of convolutions, matrix
products and attention); P is measured, not taken from a data sheet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn


def count_flops(module: nn.Module, *inputs) -> int:
    """FLOPs of one call module(*inputs) (matrix products, convolutions, attention; 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def peak_flops(size: int = 1024, repeats: int = 5) -> float:
    """The float32 FLOP/s this CPU reaches (with torch's current threads) on a size x size matrix
    product: 2 size^3 FLOPs, the best of `repeats`. The P of eq. (11.2)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / best_seconds(torch.matmul, a, b, repeats=repeats)


def timed(fn: Callable, *args) -> float:
    """Seconds of one call fn(*args)."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def best_seconds(fn: Callable, *args, repeats: int = 3) -> float:
    """The fastest of `repeats` timed calls fn(*args), after one untimed warm-up call (the first call
    allocates memory and picks kernels)."""
    fn(*args)
    return min(timed(fn, *args) for _ in range(repeats))


def roofline_seconds(images: int, calls: int, flops_per_call_and_image: float, flops_per_second: float) -> float:
    """The least time N images can take, eq. (11.2): all their FLOPs at the CPU's peak rate."""
    return images * calls * flops_per_call_and_image / flops_per_second


def seconds_by_batch(sampler: Callable, batch_sizes: list[int], image_shape=(1, 28, 28), repeats: int = 3) -> dict[int, float]:
    """The time of one sampler(noise, labels) call for each batch size (the best of `repeats`, after a warm-up)."""
    result = {}
    with torch.no_grad():
        for batch in batch_sizes:
            noise, labels = torch.randn(batch, *image_shape), torch.arange(batch) % 10
            result[batch] = best_seconds(sampler, noise, labels, repeats=repeats)
    return result


def fit_batch_cost(seconds: dict[int, float]) -> tuple[float, float]:
    """(t_0, t_1) of eq. (11.3) by least squares through measured (batch size, seconds) pairs."""
    sizes = torch.tensor(list(seconds), dtype=torch.float64)
    times = torch.tensor(list(seconds.values()), dtype=torch.float64)
    design = torch.stack([torch.ones_like(sizes), sizes], dim=1)  # (K, 2): [1, b]
    fixed, per_image = torch.linalg.lstsq(design, times[:, None]).solution[:, 0].tolist()
    return fixed, per_image


def top_operators(fn: Callable, *args, rows: int = 6) -> list[tuple[str, float]]:
    """torch.profiler over one call fn(*args): the operators that took most of the CPU time, as
    (name, share of the total self time), largest first."""
    import os

    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "99")  # the profiler's start/stop lines on stderr, silenced
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        fn(*args)
    events = [event for event in prof.key_averages() if event.self_cpu_time_total > 0]
    total = sum(event.self_cpu_time_total for event in events)
    events.sort(key=lambda event: event.self_cpu_time_total, reverse=True)
    return [(event.key, event.self_cpu_time_total / total) for event in events[:rows]]


@contextmanager
def time_modules(parts: dict[str, nn.Module]):
    """Add up the wall time spent inside each named module's forward while the block runs;
    yields the dict {name: seconds} (and {name + " calls": count})."""
    totals: dict[str, float] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, module in parts.items():
        totals[name], totals[f"{name} calls"] = 0.0, 0

        def before(module, inputs, name=name):
            starts[name] = time.perf_counter()

        def after(module, inputs, output, name=name):
            totals[name] += time.perf_counter() - starts[name]
            totals[f"{name} calls"] += 1

        handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    try:
        yield totals
    finally:
        for handle in handles:
            handle.remove()
