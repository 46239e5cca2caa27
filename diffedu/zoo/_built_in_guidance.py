"""What the models with guidance built in share (chapter 08: mnist-fast, mnist-consistency, mnist-meanflow):
they draw given digits at one fixed w, so they refuse no labels and a guidance of their own, and their cards
measure them at a few numbers of steps (network calls)."""

from __future__ import annotations

import torch

from diffedu.metrics import evaluate_samples


def check_request(name: str, labels: torch.Tensor | None, guidance: float, built_in: float) -> None:
    """One line that says what to do, for a request such a model cannot serve."""
    if labels is None:
        raise ValueError(f"{name} draws given digits only (it learned with labels): pass labels, e.g. --all-labels")
    if guidance != 1.0:
        raise ValueError(f"{name} has guidance w = {built_in} built into it: leave out guidance (--guidance)")


def evaluate_by_steps(sample, model, n: int, steps: tuple[int, ...], sampler: str) -> dict:
    """FID, accuracy and time of n digits at each number of steps: metrics["steps_K"], as the cards record them."""
    metrics = {}
    for count in steps:
        result = evaluate_samples(lambda n, labels, guidance, steps, seed: sample(model, n, steps=steps, seed=seed, labels=labels,
                                                                                  progress=False),
                                  n, steps=count, guidances=(1.0,), sampler=f"{sampler}{count}")
        metrics.setdefault("n", n)
        metrics.setdefault("fid_real_vs_real", result["fid_real_vs_real"])
        metrics[f"steps_{count}"] = result["guidance_1.0"]
    return metrics
