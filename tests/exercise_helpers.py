"""What every chapter's checker tests share: a stub answer and the hint a wrong answer gets."""

from diffedu.exercises import ExerciseResult


def stub(*args):
    raise NotImplementedError  # your code here


def wrong_message(result: ExerciseResult) -> str:
    """The one-line hint of a result that must be "wrong" (fails if it is not)."""
    assert isinstance(result, ExerciseResult) and result.status == "wrong" and not result, result
    return result.message


def hint_stages(check, wrong_answer, tries: int = 3) -> list[str]:
    """The hints of `tries` wrong tries in a row, from a fresh count (the formula should appear only late)."""
    from diffedu.exercises import reset_tries

    reset_tries()
    messages = [wrong_message(check(wrong_answer)) for _ in range(tries)]
    reset_tries()
    return messages
