"""Auto-checked exercises.

Every exercise in a chapter has a stub cell and a checker, called as the last line of a cell,
e.g. `ch03.check_guided_eps(guided_eps)`. A checker never raises and never prints: it returns an
ExerciseResult, which the notebook shows as one short line,
- "Exercise 3.2: not attempted yet — ..." for the untouched stub (the function still raises
  NotImplementedError, or the answer is still `...`);
- "Exercise 3.2: not yet — <hint>" for a wrong answer, with a hint aimed at the typical mistake
  it matches. Hints come in stages: the idea first; the formula only from the FORMULA_AFTER-th
  wrong try of that exercise on (a checker gives it as ExerciseError(idea, formula=...)).
  An exception raised by your own code (say a TypeError) becomes a one-line hint naming the
  exception, not a traceback; call your function yourself to see the traceback;
- "Exercise 3.2: correct" for a right one.

The line is in English, or in Chinese after `use_language("zh")` (the Chinese chapters in
chapters/zh/ call it in their first code cell; see diffedu/exercises/language.py).

So "Run All" always runs to the end. The result is truthy only when correct, so
`assert ch03.check_guided_eps(guided_eps)` stops where an answer is not right yet.

The reference solutions are kept apart, in the repository's top-level folder solutions/ (not
part of the installed package). Try first!
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffedu.exercises.language import translate, use_language  # noqa: F401  (use_language: for the chapters)

CORRECT, NOT_ATTEMPTED, WRONG = "correct", "not attempted", "wrong"


@dataclass(frozen=True)
class ExerciseResult:
    """What a checker found: status is "correct", "not attempted" or "wrong"; message is the hint."""

    label: str  # "3.2"
    status: str
    message: str = ""

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def __repr__(self) -> str:  # in the language use_language chose (English unless a Chinese chapter said so)
        if self.status == CORRECT:
            return translate(f"Exercise {self.label}: correct")
        if self.status == NOT_ATTEMPTED:
            return translate(f"Exercise {self.label}: not attempted yet — {self.message}")
        return translate(f"Exercise {self.label}: not yet — {self.message}")

    __str__ = __repr__

    def _repr_html_(self) -> str:  # the same line in Jupyter, with a coloured bar: green, grey or orange
        colour = {CORRECT: "#2e7d32", NOT_ATTEMPTED: "#9e9e9e"}.get(self.status, "#ef6c00")
        return (f'<div style="border-left: 4px solid {colour}; padding-left: 8px; white-space: pre-wrap">'
                f"{html.escape(repr(self))}</div>")


FORMULA_AFTER = 3  # wrong tries of one exercise before its hint also gives the formula
_wrong_tries: dict[str, int] = {}  # exercise label -> wrong tries so far, in this kernel


class ExerciseError(Exception):
    """Raised inside a checker for a wrong answer: `hint` is the idea; `formula`, if given, is shown
    only from the FORMULA_AFTER-th wrong try on."""

    def __init__(self, hint: str, formula: str | None = None):
        super().__init__(hint)
        self.hint, self.formula = hint, formula


def staged_hint(label: str, error: ExerciseError) -> str:
    """The hint for this wrong try of exercise `label`: the idea, and the formula once tries reach FORMULA_AFTER."""
    _wrong_tries[label] = _wrong_tries.get(label, 0) + 1
    if error.formula is None:
        return error.hint
    tries = _wrong_tries[label]
    if tries < FORMULA_AFTER:
        return f"{error.hint} (try {tries}; the formula comes after {FORMULA_AFTER - 1} tries)"
    return f"{error.hint}. The formula: {error.formula}"


def reset_tries() -> None:
    """Forget all wrong tries (the hints start again from the idea)."""
    _wrong_tries.clear()


class NotAttempted(Exception):
    """Raised inside a checker when the answer is still the stub."""


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exercise(label: str) -> Callable:
    """Decorate a checker that raises ExerciseError(hint) for a wrong answer and returns None for a
    right one; the decorated checker returns an ExerciseResult and never raises."""

    def decorate(checker: Callable) -> Callable:
        @functools.wraps(checker)
        def run(*answers) -> ExerciseResult:
            try:
                checker(*answers)
            except NotImplementedError:
                return ExerciseResult(label, NOT_ATTEMPTED, "replace `raise NotImplementedError` with your code and run "
                                      "both cells again")
            except NotAttempted:
                return ExerciseResult(label, NOT_ATTEMPTED, "replace the `...` with your answer and run both cells again")
            except ExerciseError as error:
                return ExerciseResult(label, WRONG, staged_hint(label, error))
            except Exception as error:  # raised by the learner's code: a hint, not a traceback
                detail = _one_line(error)
                return ExerciseResult(label, WRONG, f"your code raised {type(error).__name__}"
                                      + (f": {detail}" if detail else "")
                                      + ". Call it yourself on a small input to see where")
            return ExerciseResult(label, CORRECT)

        return run

    return decorate


def require_answer(answer: object) -> None:
    """A value answer left as `...` (or None) counts as not attempted."""
    if answer is Ellipsis or answer is None:
        raise NotAttempted


def expect_number(answer: object, what: str) -> float:
    """A number answer (int, float, NumPy number or 0-d tensor) as a float, with a hint if it is not one."""
    require_answer(answer)
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1:
            raise ExerciseError(f"answer with one number ({what}), got a tensor of shape {tuple(answer.shape)}")
        answer = answer.item()
    if isinstance(answer, (bool, str)):
        raise ExerciseError(f"answer with a number ({what}), got {answer!r}")
    try:
        return float(answer)
    except (TypeError, ValueError):
        raise ExerciseError(f"answer with a number ({what}), got {type(answer).__name__}") from None


def expect_whole_number(answer: object, what: str) -> int:
    """A whole-number answer (17, 17.0 or a 0-d tensor) as an int; 30.9 or "30" get a hint."""
    value = expect_number(answer, what)
    if not value.is_integer():
        raise ExerciseError(f"{what} is a whole number such as 17, got {answer!r}")
    return int(value)


def expect_tensor(result: object, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """Check the answer is a tensor of the right shape, with a hint if not."""
    if result is None:
        raise ExerciseError(f"your function returned None: did you forget `return {what}`?")
    if not isinstance(result, torch.Tensor):
        raise ExerciseError(f"{what} should be a torch.Tensor, got {type(result).__name__}")
    if tuple(result.shape) != tuple(shape):
        raise ExerciseError(f"{what} should have shape {tuple(shape)}, got {tuple(result.shape)}")
    return result


def same(result: torch.Tensor, candidate: torch.Tensor | None, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Whether result equals candidate (a typical mistake, or None where it does not apply)."""
    return candidate is not None and torch.allclose(result.double(), candidate.double(), atol=atol, rtol=rtol)


def reject_known_mistakes(result: torch.Tensor, mistakes: list, opening: str = "", **tolerance) -> None:
    """Raise the hint of the first typical mistake (candidate, hint) that the result equals."""
    for candidate, hint in mistakes:
        if same(result, candidate, **tolerance):
            raise ExerciseError(f"{opening}{hint}")


def expect_close(result: torch.Tensor, expected: torch.Tensor, hint: str, atol: float = 1e-5, rtol: float = 1e-4,
                 formula: str | None = None) -> None:
    """Raise ExerciseError(hint, formula) unless result and expected agree: the hint is the idea, the
    formula (if given) comes only after repeated wrong tries (see `staged_hint`)."""
    if not torch.isfinite(result).all():
        raise ExerciseError(f"your result holds NaN or inf. Hint: {hint}", formula)
    if not torch.allclose(result.double(), expected.double(), atol=atol, rtol=rtol):
        worst = (result.double() - expected.double()).abs().max().item()
        raise ExerciseError(f"{hint} (your values are off by up to {worst:.3g})", formula)
