"""Chapter 09 checkers: stub -> not attempted, wrong -> its own hint, reference -> correct; hints staged."""

import pytest
import torch

from diffedu.exercises import ch09
from diffedu.sd import finetune
from solutions import ch09 as reference
from exercise_helpers import hint_stages, stub, wrong_message

INK = {0: 0.124, 1: 0.170, 2: 0.208, 4: 0.214, 8: 0.216}  # ink by rank, as exercise 9.3's table measures it


def test_stubs_are_not_attempted(capsys):
    for result in (ch09.check_lora_parameter_count(stub), ch09.check_best_low_rank(stub),
                   ch09.check_smallest_rank(..., INK), ch09.check_token_lookup(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch09.check_lora_parameter_count(reference.solution_lora_parameter_count)) == "Exercise 9.1: correct"
    assert ch09.check_best_low_rank(reference.solution_best_low_rank)
    assert ch09.check_smallest_rank(reference.solution_smallest_rank(INK), INK)
    assert ch09.check_token_lookup(reference.solution_token_lookup)


def test_the_fallbacks_are_what_the_references_compute():
    """The chapter runs on count_with_peft and truncated_svd until 9.1 and 9.2 are solved: they agree with the references."""
    model = ch09._toy_unet()
    assert ch09.count_with_peft(model, 3) == reference.solution_lora_parameter_count(model, 3)
    delta = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ch09.truncated_svd(delta, 2), reference.solution_best_low_rank(delta, 2), atol=1e-5)
    assert ch09.LORA_TARGETS == finetune.LORA_TARGETS
    assert ch09.smallest_rank_keeping_style(INK) == reference.solution_smallest_rank(INK) == 2


def test_the_count_matches_the_shipped_lora():
    """9.1's count on mini-sd's UNet at rank 8 is the trainable count of the shipped LoRA's model card."""
    from diffedu import zoo

    unet = zoo.load("mini-sd", "cpu").unet
    assert reference.solution_lora_parameter_count(unet, 8) == zoo.card("mini-sd-lora-bold")["parameters"]["trainable"]


def _count_weights(model, rank):
    return sum(m.weight.numel() for n, m in model.named_modules() if n.endswith(ch09.LORA_TARGETS))


def _count_every_linear(model, rank):
    return sum(rank * (m.in_features + m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear))


def _count_without_output(model, rank):
    return sum(rank * (m.in_features + m.out_features) for n, m in model.named_modules() if n.endswith(("to_q", "to_k", "to_v")))


def _count_a_only(model, rank):
    return sum(rank * m.in_features for n, m in model.named_modules() if n.endswith(ch09.LORA_TARGETS))


def _count_without_rank(model, rank):
    return reference.solution_lora_parameter_count(model, 1)


def _weakest(delta, k):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    return U[:, -k:] @ torch.diag(S[-k:]) @ Vh[-k:]


def _unweighted(delta, k):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    return U[:, :k] @ Vh[:k]


def _first_k_columns(delta, k):
    kept = torch.zeros_like(delta)
    kept[:, :k] = delta[:, :k]
    return kept


def _table_only(ids, table, new_id, vector):
    return table[ids.clamp(max=table.shape[0] - 1)]


@pytest.mark.parametrize(
    "checker, wrong, phrase",
    [
        (ch09.check_lora_parameter_count, _count_weights, "frozen weights W"),
        (ch09.check_lora_parameter_count, _count_every_linear, "not on every linear layer"),
        (ch09.check_lora_parameter_count, _count_without_output, "to_out.0"),
        (ch09.check_lora_parameter_count, _count_a_only, "counts A only"),
        (ch09.check_lora_parameter_count, _count_without_rank, "grows with the rank"),
        (ch09.check_lora_parameter_count, lambda model, rank: 1000, "you counted 1,000"),
        (ch09.check_lora_parameter_count, lambda model, rank: 10.5, "whole number"),
        (ch09.check_best_low_rank, lambda delta, k: delta, "unchanged"),
        (ch09.check_best_low_rank, _weakest, "weakest"),
        (ch09.check_best_low_rank, _unweighted, "singular value"),
        (ch09.check_best_low_rank, _first_k_columns, "closest rank-k matrix"),
        (ch09.check_best_low_rank, lambda delta, k: delta.T, "shape"),
        (ch09.check_token_lookup, lambda ids, table, new_id, v: table[ids], "past the table's last row"),
        (ch09.check_token_lookup, _table_only, "wherever the new id appears"),
    ],
)
def test_wrong_functions_get_their_hint(checker, wrong, phrase):
    assert phrase in wrong_message(checker(wrong))


@pytest.mark.parametrize("answer, phrase", [(1, "short of 90%"), (4, "a smaller measured rank"), (3, "one of the ranks"),
                                            ("2", "a number")])
def test_wrong_readings_of_the_rank_table_get_their_hint(answer, phrase):
    assert phrase in wrong_message(ch09.check_smallest_rank(answer, INK))


@pytest.mark.parametrize(
    "check, wrong",
    [
        (ch09.check_lora_parameter_count, _count_weights),
        (ch09.check_lora_parameter_count, lambda model, rank: 1000),
        (ch09.check_best_low_rank, _unweighted),
        (ch09.check_best_low_rank, _first_k_columns),
        (lambda answer: ch09.check_smallest_rank(answer, INK), 1),
        (ch09.check_token_lookup, _table_only),
    ],
)
def test_hints_give_the_idea_first_and_the_formula_from_the_third_try(check, wrong):
    first, _, third = hint_stages(check, wrong)
    assert "The formula" not in first and "The formula" in third
