"""Chapter 09 checkers: stub -> not attempted, wrong -> hint, reference -> correct."""

import pytest

from diffedu.exercises import ch09
from solutions import ch09 as reference
from exercise_helpers import stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch09.check_lora_forward(stub), ch09.check_merge_lora(stub), ch09.check_token_lookup(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch09.check_lora_forward(reference.solution_lora_forward)) == "Exercise 9.1: correct"
    assert ch09.check_merge_lora(reference.solution_merge_lora)
    assert ch09.check_token_lookup(reference.solution_token_lookup)


def _table_only(ids, table, new_id, vector):
    return table[ids.clamp(max=table.shape[0] - 1)]


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch09.check_lora_forward, lambda x, w, b, A, B, a: x @ w.T + b, "W x + b alone"),
        (ch09.check_lora_forward, lambda x, w, b, A, B, a: x @ w.T + b + a * x @ A.T @ B.T, "not by alpha"),
        (ch09.check_lora_forward, lambda x, w, b, A, B, a: x @ w.T + b + x @ A.T @ B.T, "scaled by alpha / r"),
        (ch09.check_lora_forward, lambda x, w, b, A, B, a: a / A.shape[0] * x @ A.T @ B.T, "keep W x + b"),
        (ch09.check_lora_forward, lambda x, w, b, A, B, a: x @ w.T, "h = W x + b + (alpha / r) B A x"),
        (ch09.check_merge_lora, lambda w, A, B, a: w + a * B @ A, "not by alpha"),
        (ch09.check_merge_lora, lambda w, A, B, a: w + B @ A, "scale B A by alpha / r"),
        (ch09.check_merge_lora, lambda w, A, B, a: a / A.shape[0] * B @ A, "keeps the frozen W"),
        (ch09.check_token_lookup, lambda ids, table, new_id, v: table[ids], "past the table's last row"),
        (ch09.check_token_lookup, _table_only, "where ids == new_id"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


def test_a_wrongly_shaped_answer_says_so():
    assert "shape" in wrong_message(ch09.check_merge_lora(lambda w, A, B, a: (w + B @ A).T))
