"""Reference solutions of chapter 00's exercises (try first!). Checked by tests/test_exercises_ch00.py."""

import torch

SOLUTION_0_1 = 1028  # (load_mnist("test").labels == 7).sum()


def solution_to_pixels(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1)[:, 0] + 1) * 127.5).round().to(torch.uint8)
