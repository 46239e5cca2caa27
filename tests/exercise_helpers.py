"""What every chapter's checker tests share: a stub answer and the hint a wrong answer gets."""

from diffedu.exercises import ExerciseResult


def stub(*args):
    raise NotImplementedError  # your code here


def wrong_message(result: ExerciseResult) -> str:
    """The one-line hint of a result that must be "wrong" (fails if it is not)."""
    assert isinstance(result, ExerciseResult) and result.status == "wrong" and not result, result
    return result.message
