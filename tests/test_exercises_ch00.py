"""How every checker reports (diffedu/exercises/__init__.py), and chapter 00's checkers: stub ->
not attempted, typical mistakes -> their hint, reference -> correct."""

import pytest
import torch

from diffedu.exercises import ExerciseError, ExerciseResult, ch00, exercise
from solutions import ch00 as reference
from exercise_helpers import hint_stages, stub, wrong_message


# The result object: one line, no traceback, truthy only when correct


@exercise("9.9")
def _check_positive(answer):
    if answer is ...:
        raise NotImplementedError
    if answer() <= 0:  # calls the learner's code, which may raise
        raise ExerciseError("the answer must be positive")


def test_a_result_is_one_line_and_truthy_only_when_correct(capsys):
    correct, stub_result, wrong = _check_positive(lambda: 1), _check_positive(...), _check_positive(lambda: -1)
    assert repr(correct) == str(correct) == "Exercise 9.9: correct" and correct
    assert repr(stub_result).startswith("Exercise 9.9: not attempted yet — replace") and not stub_result
    assert repr(wrong) == "Exercise 9.9: not yet — the answer must be positive" and not wrong
    assert capsys.readouterr().out == ""  # nothing printed: the notebook shows the repr once
    assert "<div" in wrong._repr_html_() and "not yet" in wrong._repr_html_()
    assert "&lt;" in ExerciseResult("9.9", "wrong", "x < 0")._repr_html_()  # hints are escaped


def test_exceptions_in_the_learners_code_become_a_one_line_hint():
    def crashes():
        return torch.ones(2) + "one"

    message = wrong_message(_check_positive(crashes))
    assert message.startswith("your code raised TypeError: ") and "\n" not in message
    assert "ZeroDivisionError: division by zero" in wrong_message(_check_positive(lambda: 1 / 0))
    assert "KeyError" in wrong_message(_check_positive(lambda: {}["k"]))


# Exercise 0.1


def test_stubs_are_not_attempted():
    for result in (ch00.check_count_sevens(...), ch00.check_count_sevens(None), ch00.check_to_pixels(stub)):
        assert result.status == "not attempted" and "not attempted yet" in repr(result) and not result


def test_reference_solutions_pass():
    assert ch00.check_count_sevens(reference.SOLUTION_0_1)
    assert ch00.check_count_sevens(torch.tensor(reference.SOLUTION_0_1))  # `(labels == 7).sum()` as it comes
    assert ch00.check_to_pixels(reference.solution_to_pixels)


def _count(split, digit):
    from diffedu.course.data import load_mnist

    return int((load_mnist(split).labels == digit).sum())


@pytest.mark.parametrize(
    "answer, phrase",
    [
        (lambda: _count("train", 7), "training set"),
        (lambda: 10_000, "whole test set"),
        (lambda: _count("test", 1), "another digit"),
        (lambda: 7, "test labels equal to 7"),
        (lambda: 1028.5, "whole number"),
        (lambda: "1028", "a number"),
    ],
)
def test_count_mistakes_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch00.check_count_sevens(answer()))


# Exercise 0.2

PIXEL_MISTAKES = {
    "truncated": (lambda x: ((x.clamp(-1, 1)[:, 0] + 1) * 127.5).to(torch.uint8), "round to the nearest"),
    "not clamped": (lambda x: ((x[:, 0] + 1) * 127.5).round().to(torch.uint8), "clamp to [-1, 1] first"),
    "x * 255": (lambda x: (x.clamp(-1, 1)[:, 0] * 255).round().clamp(0, 255).to(torch.uint8), "x * 255 sends -1 below 0"),
    "channel kept": (lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8), "drop the channel axis"),
    "float": (lambda x: ((x.clamp(-1, 1)[:, 0] + 1) * 127.5).round(), "torch.uint8"),
    "no return": (lambda x: None, "forget `return"),
    "numpy": (lambda x: ((x.clamp(-1, 1)[:, 0] + 1) * 127.5).round().numpy(), "should be a torch.Tensor"),
    "off by one": (lambda x: ((x.clamp(-1, 1)[:, 0] + 1) * 127).round().to(torch.uint8), "off by up to"),
    "crashes": (lambda x: x.to_uint8(), "your code raised AttributeError"),
}


@pytest.mark.parametrize("wrong, phrase", PIXEL_MISTAKES.values(), ids=PIXEL_MISTAKES.keys())
def test_pixel_mistakes_get_their_hint(wrong, phrase):
    assert phrase in wrong_message(ch00.check_to_pixels(wrong))


def test_hints_come_in_stages():
    first, _, third = hint_stages(ch00.check_count_sevens, 7)
    assert "The formula" not in first and "== 7).sum()" not in first and "The formula: (load_mnist('test').labels == 7).sum()" in third
    first, _, third = hint_stages(ch00.check_to_pixels, PIXEL_MISTAKES["x * 255"][0])
    assert "127.5" not in first and "The formula: ((images.clamp(-1, 1)[:, 0] + 1) * 127.5)" in third
