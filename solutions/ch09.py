"""Reference solutions of chapter 09's exercises (try first!). Checked by tests/test_exercises_ch09.py."""

import torch


def solution_lora_forward(x, weight, bias, lora_A, lora_B, alpha):
    rank = lora_A.shape[0]
    return x @ weight.T + bias + (alpha / rank) * (x @ lora_A.T) @ lora_B.T  # eq. (9.1)


def solution_merge_lora(weight, lora_A, lora_B, alpha):
    return weight + (alpha / lora_A.shape[0]) * lora_B @ lora_A  # (d_out, r) @ (r, d_in): the shape of W


def solution_token_lookup(token_ids, table, new_id, vector):
    looked_up = table[token_ids.clamp(max=table.shape[0] - 1)]  # (B, L, dim); the new id's rows are replaced below
    return torch.where((token_ids == new_id)[..., None], vector, looked_up)  # eq. (9.3)
