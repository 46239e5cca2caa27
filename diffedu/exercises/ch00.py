"""Exercises of chapter 00 (set-up). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import torch

from diffedu.data import load_mnist, to_uint8
from diffedu.exercises import ExerciseError, exercise, expect_tensor, require_answer


@exercise("0.1")
def check_count_sevens(answer) -> None:
    """Exercise 0.1: the number of 7s in the MNIST test set."""
    require_answer(answer)
    test_labels = load_mnist("test").labels
    expected = int((test_labels == 7).sum())
    if answer == int((load_mnist("train").labels == 7).sum()):
        raise ExerciseError("that is the count in the training set: use load_mnist('test')")
    if answer != expected:
        raise ExerciseError("count the labels equal to 7, e.g. `(load_mnist('test').labels == 7).sum()`")


@exercise("0.2")
def check_to_pixels(to_pixels) -> None:
    """Exercise 0.2: map [-1, 1] floats (N, 1, 28, 28) to uint8 pixels (N, 28, 28)."""
    images = torch.linspace(-1.2, 1.2, 2 * 28 * 28).reshape(2, 1, 28, 28)
    result = expect_tensor(to_pixels(images), (2, 28, 28), "the pixels")
    if result.dtype != torch.uint8:
        raise ExerciseError(f"the result should be torch.uint8, got {result.dtype}: use .to(torch.uint8) after rounding")
    expected = torch.from_numpy(to_uint8(images))
    if not torch.equal(result, expected):
        worst = (result.int() - expected.int()).abs().max().item()
        raise ExerciseError(
            f"some pixels are off by up to {worst}. Map x to (x + 1) * 127.5, clamp to [-1, 1] "
            "first, and round (not truncate) before converting"
        )


# Reference solutions (try first!)

SOLUTION_0_1 = 1028


def solution_to_pixels(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1)[:, 0] + 1) * 127.5).round().to(torch.uint8)
