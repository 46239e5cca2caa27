"""Exercises of chapter 09 (LoRA, textual inversion, ControlNet). See diffedu/exercises/__init__.py
for how checkers work."""

from __future__ import annotations

import torch
from torch import nn

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_tensor


def _peft_layer(seed: int, d_in: int = 12, d_out: int = 10, rank: int = 4, alpha: float = 8.0):
    """A linear layer wrapped by PEFT's LoRA, with a trained-looking B (PEFT starts it at zero)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(nn.Sequential(nn.Linear(d_in, d_out)), LoraConfig(r=rank, lora_alpha=alpha,
                                                                             target_modules=["0"], lora_dropout=0.0))
    layer = model.base_model.model[0]
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    return model, layer


@exercise("9.1")
def check_lora_forward(lora_forward) -> None:
    """Exercise 9.1: the LoRA layer's output, eq. (9.1), against PEFT's layer."""
    model, layer = _peft_layer(1)
    weight, bias = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()  # (10, 12), (10,)
    lora_A, lora_B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()  # (4, 12), (10, 4)
    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        right = model(x)  # PEFT's forward
        base = x @ weight.T + bias
        update = x @ lora_A.T @ lora_B.T
    result = expect_tensor(lora_forward(x, weight, bias, lora_A, lora_B, 8.0), (7, 10), "h").float()
    if torch.allclose(result, base, atol=1e-5):
        raise ExerciseError("that is W x + b alone: add the low-rank update (alpha / r) B A x")
    if torch.allclose(result, base + 8.0 * update, atol=1e-5):
        raise ExerciseError("the update is scaled by alpha / r (here 8 / 4 = 2), not by alpha: r is lora_A.shape[0]")
    if torch.allclose(result, base + update, atol=1e-5):
        raise ExerciseError("the update is scaled by alpha / r (here 2): without it, changing r would change the step size")
    if torch.allclose(result, update * 2.0, atol=1e-5):
        raise ExerciseError("LoRA adds to the frozen layer: h = W x + b + (alpha / r) B A x, keep W x + b")
    expect_close(result, right, "h = W x + b + (alpha / r) B A x, as PEFT's layer computes", atol=1e-5)


@exercise("9.2")
def check_merge_lora(merge_lora) -> None:
    """Exercise 9.2: the fused weight W + (alpha / r) B A, against PEFT's merge_and_unload."""
    model, layer = _peft_layer(3, d_in=16, d_out=6, rank=2, alpha=4.0)
    weight = layer.base_layer.weight.detach().clone()
    lora_A, lora_B = layer.lora_A["default"].weight.detach().clone(), layer.lora_B["default"].weight.detach().clone()
    result = expect_tensor(merge_lora(weight.clone(), lora_A, lora_B, 4.0), (6, 16), "the merged weight").float()
    with torch.no_grad():
        right = model.merge_and_unload()[0].weight
    if torch.allclose(result, weight + 4.0 * lora_B @ lora_A, atol=1e-5):
        raise ExerciseError("scale B A by alpha / r (here 4 / 2 = 2), not by alpha")
    if torch.allclose(result, weight + lora_B @ lora_A, atol=1e-5):
        raise ExerciseError("scale B A by alpha / r (here 2), as the layer's forward does")
    if torch.allclose(result, lora_B @ lora_A * 2.0, atol=1e-5):
        raise ExerciseError("the merged weight keeps the frozen W: W + (alpha / r) B A")
    expect_close(result, right, "W + (alpha / r) B A, PEFT's merge_and_unload", atol=1e-5)


@exercise("9.3")
def check_token_lookup(token_lookup) -> None:
    """Exercise 9.3: textual inversion's embedding lookup, eq. (9.3): the table's rows, with the learned
    vector wherever the new token appears."""
    gen = torch.Generator().manual_seed(4)
    table = torch.randn(20, 8, generator=gen)  # (V, dim): ids 0..19
    vector = torch.randn(8, generator=gen)
    new_id = 20  # the new token comes after the table's last row
    token_ids = torch.tensor([[3, 20, 5, 19], [20, 20, 0, 1]])  # (B, L)
    try:
        result = token_lookup(token_ids, table, new_id, vector)
    except IndexError as error:
        raise ExerciseError("the new token's id (20) is past the table's last row: use the vector there, "
                            "look up only the other ids in the table (e.g. clamp them, then torch.where)") from error
    result = expect_tensor(result, (2, 4, 8), "the embeddings").float()
    right = table[token_ids.clamp(max=19)].clone()
    right[token_ids == new_id] = vector
    if torch.allclose(result[0, 0], vector) and not torch.allclose(result[0, 1], vector):
        raise ExerciseError("put the vector where the ids equal new_id, not at a fixed position")
    expect_close(result, right, "table[ids] for the old ids and `vector` where ids == new_id")
