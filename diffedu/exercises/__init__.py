"""Auto-checked exercises.

Every exercise in a chapter has a stub cell and a checker. The checker
- prints "not attempted yet" for the untouched stub (it raises NotImplementedError, or the
  answer is still `...`) and returns False, so the notebook still runs top to bottom;
- raises ExerciseError with a hint for a wrong answer;
- prints "correct" and returns True for a right one.

The reference solutions sit at the bottom of each chapter's file (try first!).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


class ExerciseError(AssertionError):
    """A wrong answer; the message is a hint."""


class NotAttempted(Exception):
    """Raised inside a checker when the answer is still the stub."""


def exercise(label: str) -> Callable:
    """Decorate a checker: turn NotImplementedError/NotAttempted into "not attempted yet"."""

    def decorate(checker: Callable) -> Callable:
        @functools.wraps(checker)
        def run(*answers) -> bool:
            try:
                checker(*answers)
            except (NotImplementedError, NotAttempted):
                print(f"Exercise {label}: not attempted yet. Replace the stub with your answer and run this cell again.")
                return False
            print(f"Exercise {label}: correct!")
            return True

        return run

    return decorate


def require_answer(answer: object) -> None:
    """A value answer left as `...` (or None) counts as not attempted."""
    if answer is Ellipsis or answer is None:
        raise NotAttempted


def expect_tensor(result: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """Check the answer is a tensor of the right shape, with a hint if not."""
    if result is None:
        raise ExerciseError(f"your function returned None: did you forget `return {what}`?")
    if not isinstance(result, torch.Tensor):
        raise ExerciseError(f"{what} should be a torch.Tensor, got {type(result).__name__}")
    if tuple(result.shape) != tuple(shape):
        raise ExerciseError(f"{what} should have shape {tuple(shape)}, got {tuple(result.shape)}")
    return result


def expect_close(result: torch.Tensor, expected: torch.Tensor, hint: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Raise ExerciseError(hint) unless result and expected agree."""
    if not torch.allclose(result.double(), expected.double(), atol=atol, rtol=rtol):
        worst = (result.double() - expected.double()).abs().max().item()
        raise ExerciseError(f"not quite (largest difference {worst:.3g}). Hint: {hint}")
