"""Exercises of chapter 00 (set-up). See diffedu/exercises/__init__.py for how checkers work."""

from __future__ import annotations

import functools

import torch

from diffedu.course.data import load_mnist, to_uint8
from diffedu.exercises import ExerciseError, exercise, expect_tensor, expect_whole_number


@functools.lru_cache(maxsize=2)
def _label_counts(split: str) -> tuple[int, ...]:
    """How many images of each digit 0..9 the split holds (loaded once: the checker may run often)."""
    return tuple(torch.bincount(load_mnist(split).labels, minlength=10).tolist())


@exercise("0.1")
def check_count_sevens(answer) -> None:
    """Exercise 0.1: the number of 7s in the MNIST test set."""
    count = expect_whole_number(answer, "a count")
    test_counts = _label_counts("test")
    if count == test_counts[7]:
        return
    if count == _label_counts("train")[7]:
        raise ExerciseError("that is the count in the training set: use load_mnist('test')")
    if count == sum(test_counts):
        raise ExerciseError("that is the size of the whole test set: count only the labels equal to 7")
    if count in test_counts:
        raise ExerciseError("that is the count of another digit: compare the labels with 7")
    raise ExerciseError("count the test labels equal to 7", formula="(load_mnist('test').labels == 7).sum()")


@exercise("0.2")
def check_to_pixels(to_pixels) -> None:
    """Exercise 0.2: map [-1, 1] floats (N, 1, 28, 28) to uint8 pixels (N, 28, 28)."""
    images = torch.linspace(-1.2, 1.2, 2 * 28 * 28).reshape(2, 1, 28, 28)  # (N, 1, 28, 28), a little outside [-1, 1]
    output = to_pixels(images.clone())
    if isinstance(output, torch.Tensor) and tuple(output.shape) == (2, 1, 28, 28):
        raise ExerciseError("drop the channel axis: (N, 1, 28, 28) -> (N, 28, 28), e.g. images[:, 0]")
    result = expect_tensor(output, (2, 28, 28), "the pixels")
    if result.dtype != torch.uint8:
        raise ExerciseError(f"the result should be torch.uint8, got {result.dtype}: use .to(torch.uint8) after rounding")
    expected = torch.from_numpy(to_uint8(images))
    if torch.equal(result, expected):
        return
    inside = images[:, 0].clamp(-1, 1)
    formula = "((images.clamp(-1, 1)[:, 0] + 1) * 127.5).round().to(torch.uint8)"
    mistakes = [
        (((inside + 1) * 127.5).to(torch.uint8), "round to the nearest integer before converting: .to(torch.uint8) "
         "truncates, so 254.9 would become 254"),
        (((images[:, 0] + 1) * 127.5).round().to(torch.uint8), "clamp to [-1, 1] first: values outside the range "
         "wrap around in uint8 (256 becomes 0)"),
        ((inside * 127.5).round().to(torch.uint8), "shift before scaling: -1 must become 0, and 1 must become 255"),
        ((inside * 255).round().clamp(0, 255).to(torch.uint8), "shift before scaling: -1 must become 0, and 1 must "
         "become 255; x * 255 sends -1 below 0"),
    ]
    for mistake, hint in mistakes:
        if torch.equal(result, mistake):
            raise ExerciseError(hint, formula)
    worst = (result.int() - expected.int()).abs().max().item()
    raise ExerciseError(f"some pixels are off by up to {worst}. Clamp to [-1, 1], map the range [-1, 1] onto [0, 255], and "
                        "round (not truncate) before converting", formula)
