"""Exercises of chapter 09 (LoRA, textual inversion). See diffedu/exercises/__init__.py for how
checkers work.

9.1 counts LoRA's numbers from a model's layer shapes; 9.2 cuts a weight update to rank k; 9.3
measures how small a rank keeps the shipped LoRA's style; 9.4 is textual inversion's lookup.
`count_with_peft` and `truncated_svd` are what the chapter uses until 9.1 and 9.2 are solved.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor, expect_whole_number, require_answer

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # as diffedu.sd.finetune.LORA_TARGETS: the attention projections
INK_SHARE = 0.9  # exercise 9.3: a rank "keeps the style" when it gains this share of the full LoRA's extra ink


# --- what the chapter uses until 9.1 and 9.2 are solved ------------------------------------------

def count_with_peft(model: nn.Module, rank: int) -> int:
    """The numbers PEFT's LoRA adds at `rank` on model's attention projections (LORA_TARGETS),
    counted by adding the adapters to a copy of the model."""
    from peft import LoraConfig, inject_adapter_in_model

    adapted = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS)),
                                      copy.deepcopy(model))
    return sum(p.numel() for name, p in adapted.named_parameters() if "lora_" in name)


def truncated_svd(delta: torch.Tensor, k: int) -> torch.Tensor:
    """The rank-k matrix closest to delta (d_out, d_in), from torch.linalg.svd."""
    U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)  # (d_out, m), (m,), (m, d_in), S largest first
    return (U[:, :k] * S[:k] @ Vh[:k]).to(delta.dtype)


# --- 9.1 -------------------------------------------------------------------------------------------

class _Attention(nn.Module):
    """Diffusers' attention names: to_q, to_k, to_v and to_out = [projection, dropout]."""

    def __init__(self, width: int, context: int, inner: int):
        super().__init__()
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_k = nn.Linear(context, inner, bias=False)
        self.to_v = nn.Linear(context, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, width), nn.Dropout(0.0)])


def _toy_unet() -> nn.Module:
    """A small model named like a UNet: two attention blocks of different sizes among other linear layers."""
    torch.manual_seed(0)
    return nn.ModuleDict({"proj_in": nn.Linear(6, 24), "attn1": _Attention(24, 24, 16), "ff": nn.Linear(24, 40),
                          "attn2": _Attention(24, 10, 12), "proj_out": nn.Linear(24, 6)})


def _targets(model: nn.Module) -> list[nn.Linear]:
    return [module for name, module in model.named_modules() if name.endswith(LORA_TARGETS)]


@exercise("9.1")
def check_lora_parameter_count(lora_parameter_count) -> None:
    """Exercise 9.1: LoRA's numbers at a given rank on every attention projection, from the layers'
    shapes, against PEFT's count on a small model named like a UNet."""
    model = _toy_unet()
    layers = _targets(model)
    every_linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for rank in (2, 5):
        answer = expect_whole_number(lora_parameter_count(model, rank), f"the count at rank {rank}")
        right = count_with_peft(model, rank)
        if answer == right:
            continue
        mistakes = {
            sum(m.weight.numel() for m in layers): "that is the count of the frozen weights W: LoRA trains A and B beside each",
            sum(rank * m.in_features for m in layers): "that counts A only: B is trained too",
            sum(rank * m.out_features for m in layers): "that counts B only: A is trained too",
            sum(m.in_features + m.out_features for m in layers): "the count grows with the rank r",
            sum(rank * (m.in_features + m.out_features) for m in every_linear):
                "LoRA goes on the attention projections only (names ending in LORA_TARGETS), not on every linear layer",
            sum(rank * (m.in_features + m.out_features) for m in layers if not isinstance(m.bias, torch.Tensor)):
                "the output projection counts too: its name ends in to_out.0 (to_out is a list, the projection its entry 0)",
        }
        raise ExerciseError(mistakes.get(answer, f"at rank {rank} the small model's attention projections get {right:,} "
                                         f"LoRA numbers, you counted {answer:,}. Each adapted layer gets an A and a B"),
                            formula="the sum over layers whose name ends in LORA_TARGETS of rank * (in_features + out_features)")


# --- 9.2 -------------------------------------------------------------------------------------------

@exercise("9.2")
def check_best_low_rank(best_low_rank) -> None:
    """Exercise 9.2: the rank-k matrix closest to a weight update (Eckart-Young), against the truncated SVD."""
    gen = torch.Generator().manual_seed(9)
    delta = torch.randn(12, 6, generator=gen) @ torch.randn(6, 20, generator=gen) / 3  # (d_out, d_in) of rank 6, as B A
    k = 2
    result = expect_tensor(best_low_rank(delta.clone(), k), (12, 20), "the rank-2 matrix").double()
    delta = delta.double()
    right = truncated_svd(delta, k)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    reject = [(delta, "that is delta unchanged: keep only its k strongest directions"),
              (U[:, -k:] * S[-k:] @ Vh[-k:], "those are the k weakest directions: torch.linalg.svd sorts S largest first"),
              (U[:, :k] @ Vh[:k], "each direction counts as much as its singular value: weight it by S"),
              (U[:, :k] * S[:k].square() @ Vh[:k], "weight each direction by its singular value, not its square")]
    for candidate, hint in reject:
        if torch.allclose(result, candidate, atol=1e-4):
            raise ExerciseError(hint, formula="U[:, :k] @ torch.diag(S[:k]) @ Vh[:k], "
                                              "with U, S, Vh = torch.linalg.svd(delta, full_matrices=False)")
    if torch.linalg.matrix_rank(result.float(), atol=1e-3) > k:
        raise ExerciseError(f"your matrix has rank {torch.linalg.matrix_rank(result.float(), atol=1e-3)}, more than k = {k}",
                            formula="U[:, :k] @ torch.diag(S[:k]) @ Vh[:k], "
                                    "with U, S, Vh = torch.linalg.svd(delta, full_matrices=False)")
    expect_close(result, right, "the closest rank-k matrix keeps delta's k largest singular directions, "
                 "each with its singular value (the singular value decomposition)", atol=1e-4,
                 formula="U[:, :k] @ torch.diag(S[:k]) @ Vh[:k], with U, S, Vh = torch.linalg.svd(delta, full_matrices=False)")


# --- 9.3 -------------------------------------------------------------------------------------------

def smallest_rank_keeping_style(ink_by_rank: dict[int, float], share: float = INK_SHARE) -> int:
    """The smallest measured rank k > 0 with ink(k) - ink(0) >= share * (ink(r) - ink(0)), r the largest rank."""
    full = max(ink_by_rank)
    gained = ink_by_rank[full] - ink_by_rank[0]
    return min(k for k in ink_by_rank if k > 0 and ink_by_rank[k] - ink_by_rank[0] >= share * gained)


@exercise("9.3")
def check_smallest_rank(answer, ink_by_rank: dict[int, float]) -> None:
    """Exercise 9.3: the smallest rank that keeps the style, read from the chapter's own measurement."""
    require_answer(answer)
    answer = expect_whole_number(answer, "a rank")
    ranks = sorted(k for k in ink_by_rank if k > 0)
    if answer not in ranks:
        raise ExerciseError(f"answer with one of the ranks the table measured: {', '.join(map(str, ranks))}")
    right = smallest_rank_keeping_style(ink_by_rank)
    full = max(ranks)
    gained = ink_by_rank[full] - ink_by_rank[0]
    kept = (ink_by_rank[answer] - ink_by_rank[0]) / gained
    formula = (f"extra ink at rank k = ink(k) - ink(0); the answer is the smallest k with extra(k) >= {INK_SHARE} "
               f"* extra({full})")
    if answer < right:
        raise ExerciseError(f"at rank {answer} the images gain {kept:.0%} of the full LoRA's extra ink, short of "
                            f"{INK_SHARE:.0%}", formula=formula)
    if answer > right:
        raise ExerciseError(f"rank {answer} keeps the style, but a smaller measured rank already does: compare "
                            "each rank's ink with rank 0's, as a share of the full LoRA's gain", formula=formula)


# --- 9.4 -------------------------------------------------------------------------------------------

@exercise("9.4")
def check_token_lookup(token_lookup) -> None:
    """Exercise 9.4: textual inversion's embedding lookup, eq. (9.3): the table's rows, with the learned
    vector wherever the new token appears."""
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(20, 8, generator=gen)  # (V, dim): ids 0..19
    vector = torch.randn(8, generator=gen)
    new_id = 20  # the new token comes after the table's last row
    token_ids = torch.tensor([[3, 20, 5, 19], [20, 20, 0, 1]])  # (B, L)
    formula = "torch.where((token_ids == new_id)[..., None], vector, table[token_ids.clamp(max=V - 1)])"
    try:
        result = token_lookup(token_ids, table, new_id, vector)
    except IndexError as error:
        raise ExerciseError("the new token's id (20) is past the table's last row: look up only the other ids in the "
                            "table, and put the vector where the new id is", formula=formula) from error
    result = expect_tensor(result, (2, 4, 8), "the embeddings").float()
    right = table[token_ids.clamp(max=19)].clone()
    right[token_ids == new_id] = vector
    if torch.allclose(result[0, 0], vector) and not torch.allclose(result[0, 1], vector):
        raise ExerciseError("put the vector where the ids equal new_id, not at a fixed position", formula=formula)
    expect_close(result, right, "the table's rows for the old ids, and the learned vector wherever the new id appears",
                 formula=formula)
