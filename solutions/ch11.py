"""Reference solutions of chapter 11's exercises (try first!). Checked by tests/test_exercises_ch11.py."""

import torch


def solution_predict_throughput(batch, b1, s1, b2, s2):
    per_image = (s2 - s1) / (b2 - b1)  # t_1: the slope of (11.3) through the two timings
    fixed = s1 - b1 * per_image  # t_0: its intercept
    return batch / (fixed + batch * per_image)


def solution_users_within(max_latency, fixed, per_image, batching):
    if batching:
        users = (max_latency - fixed) / per_image  # t_0 + C t_1 <= W: one call holds all C requests
    else:
        users = max_latency / (fixed + per_image)  # C (t_0 + t_1) <= W: C calls of one image, one after the other
    return max(0, int(users))  # whole users, rounded down; none if one call is already too slow


def solution_quantize_per_channel(weight):
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127  # (C_out, 1, 1, 1): each channel's largest |w| -> 127
    return torch.round(weight / scale).to(torch.int8), scale  # (11.4), channel by channel
