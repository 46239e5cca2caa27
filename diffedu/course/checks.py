"""Input checks shared by the library: each error says what was expected and what to do."""

from __future__ import annotations

import torch


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Raise TypeError unless `value` is a tensor; return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ValueError if `value` holds NaN or infinity (a diverged model, usually)."""
    check_tensor(name, value)
    if value.is_floating_point() and not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(
            f"{name} has {bad} NaN/inf values: check the input data, or lower the learning "
            "rate if a model produced it"
        )
    return value


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ValueError unless two tensors have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )


def check_timesteps(k: torch.Tensor | int, num_train_timesteps: int, batch_size: int | None = None) -> torch.Tensor:
    """Turn the code timestep(s) `k` into a long tensor and check that 0 <= k < num_train_timesteps
    (and its batch size). Code timesteps are 0-indexed, as in diffusers: code k is the paper's t = k + 1.
    """
    T = num_train_timesteps
    k = torch.as_tensor(k)
    if k.is_floating_point() or k.is_complex():
        if not torch.equal(k, k.round()):
            raise ValueError(f"the timestep k must hold whole numbers (code indices 0..{T - 1}, the paper's t = k + 1), "
                             f"got {k.flatten()[:5].tolist()}")
    k = k.long()
    if k.numel() and (k.min() < 0 or k.max() >= T):
        bad = k.min().item() if k.min() < 0 else k.max().item()
        raise ValueError(f"the timestep k must be in [0, {T - 1}], got {bad}: library timesteps are code indices "
                         f"k = 0..{T - 1} into alpha_bar, and code k is the paper's t = k + 1 "
                         f"(paper t = {T} is k = {T - 1}; the clean x_0, paper t = 0, has no index)")
    if batch_size is not None and k.ndim == 1 and k.shape[0] not in (1, batch_size):
        raise ValueError(f"k must have one timestep per sample ({batch_size}), got {k.shape[0]}")
    if k.ndim > 1:
        raise ValueError(f"k must be a scalar or a 1-D tensor (B,), got shape {tuple(k.shape)}")
    return k


def broadcast_to_batch(values: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Per-sample values (B,) or a scalar (a number or a 0-d tensor) as a tensor of x's dtype that
    multiplies `x` (B, ...): shape (B, 1, 1, ...). Values with x's number of dimensions stay as they are."""
    values = torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return values if values.ndim == x.ndim else values.reshape(-1, *([1] * (x.ndim - 1)))
