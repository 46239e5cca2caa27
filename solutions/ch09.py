"""Reference solutions of chapter 09's exercises (try first!). Checked by tests/test_exercises_ch09.py."""

import torch

from diffedu.sd.finetune import LORA_TARGETS


def solution_lora_parameter_count(model, rank):
    adapted = [layer for name, layer in model.named_modules() if name.endswith(LORA_TARGETS)]  # the attention projections
    return sum(rank * (layer.in_features + layer.out_features) for layer in adapted)  # A (r, d_in) and B (d_out, r) per layer


def solution_best_low_rank(delta, k):
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)  # (d_out, m), (m,), (m, d_in); S sorted largest first
    return U[:, :k] @ torch.diag(S[:k]) @ Vh[:k]  # Eckart-Young: the closest rank-k matrix


def solution_smallest_rank(ink_by_rank, share=0.9):
    """What the learner reads from the table: the smallest rank whose extra ink reaches `share` of the full LoRA's."""
    full = max(ink_by_rank)
    extra = {k: ink - ink_by_rank[0] for k, ink in ink_by_rank.items()}
    return min(k for k in extra if k > 0 and extra[k] >= share * extra[full])


def solution_token_lookup(token_ids, table, new_id, vector):
    looked_up = table[token_ids.clamp(max=table.shape[0] - 1)]  # (B, L, dim); the new id's rows are replaced below
    return torch.where((token_ids == new_id)[..., None], vector, looked_up)  # eq. (9.3)
