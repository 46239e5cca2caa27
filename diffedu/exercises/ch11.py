"""Exercises of chapter 11 (deployment). See diffedu/exercises/__init__.py for how checkers work.

11.1 predicts throughput at any batch size from two timings (11.3); 11.2 predicts how many
closed-loop users a server keeps within a latency bound, with and without batching, from (11.3);
11.3 builds per-channel int8 quantisation, the refinement of (11.4) that real quantisers use.
"""

from __future__ import annotations

import torch

from diffedu.exercises import (ExerciseError, exercise, expect_number, expect_tensor, expect_whole_number,
                               reject_known_mistakes)


# --- 11.1 ------------------------------------------------------------------------------------------

def _throughput(batch, b1, s1, b2, s2):
    per_image = (s2 - s1) / (b2 - b1)  # the slope t_1 of (11.3)
    fixed = s1 - b1 * per_image  # its intercept t_0
    return batch / (fixed + batch * per_image)


@exercise("11.1")
def check_predict_throughput(predict_throughput) -> None:
    """Exercise 11.1: images per second at `batch` from t(b) = t_0 + b t_1 through two measured points."""
    for case in ((64, 1, 0.010, 16, 0.040), (256, 4, 0.02, 32, 0.09), (8, 2, 0.5, 10, 0.9)):
        batch, b1, s1, b2, s2 = case
        answer = expect_number(predict_throughput(*case), "the predicted images per second")
        right = _throughput(*case)
        if abs(answer - right) <= 1e-6 * right:
            continue
        per_image = (s2 - s1) / (b2 - b1)
        if abs(answer - b2 / s2) <= 1e-6 * right or abs(answer - b1 / s1) <= 1e-6 * right:
            raise ExerciseError("that is the throughput of a measured batch: (11.3) predicts another batch size")
        if abs(answer - 1 / per_image) <= 1e-6 * right:
            raise ExerciseError("1 / t_1 is the limit for very large batches: at a finite batch the fixed part t_0 still counts")
        if abs(answer - 1 / right) <= 1e-6 / right:
            raise ExerciseError("that is seconds per image: throughput is images per second, its inverse")
        raise ExerciseError("find t_0 and t_1 from the two points (a straight line through them), then throughput = b / t(b)",
                            formula="t_1 = (s2 - s1) / (b2 - b1); t_0 = s1 - b1 t_1; throughput = batch / (t_0 + batch t_1)")


# --- 11.2 ------------------------------------------------------------------------------------------

def _users_within(max_latency, fixed, per_image, batching):
    if batching:  # every batch holds all C requests: each waits one call of C images, t_0 + C t_1
        users = (max_latency - fixed) / per_image
    else:  # one image per call, C requests in line: each waits C calls, C (t_0 + t_1)
        users = max_latency / (fixed + per_image)
    return max(0, int(users))  # whole users, rounded down


@exercise("11.2")
def check_users_within(users_within) -> None:
    """Exercise 11.2: the most closed-loop users (one image each) a server keeps within a latency bound."""
    cases = ((0.25, 0.003, 0.0021), (0.1, 0.012, 0.0007), (1.0, 0.03, 0.011), (0.002, 0.003, 0.001))  # none lands on a whole number
    for max_latency, fixed, per_image in cases:
        for batching in (False, True):
            case = "with batching" if batching else "without batching"
            answer = users_within(max_latency, fixed, per_image, batching)
            if isinstance(answer, float) and not answer.is_integer():
                raise ExerciseError(f"{case}, {answer:.4g} users: users come whole; round down, since one more would "
                                    "go over the bound")
            answer = expect_whole_number(answer, "the number of users")
            right = _users_within(max_latency, fixed, per_image, batching)
            if answer == right:
                continue
            if answer < 0:
                raise ExerciseError("a bound below the time of one call allows no users at all: 0, not a negative number")
            if not batching and answer == _users_within(max_latency, fixed, per_image, True):
                raise ExerciseError("without batching the fixed part t_0 is paid by every request in line, not once")
            if batching and answer == _users_within(max_latency, fixed, per_image, False):
                raise ExerciseError("with batching, all C requests share one call: t_0 is paid once per batch")
            raise ExerciseError(f"{case}: write the latency of C users as a function of C with (11.3) (how many images "
                                "does one call hold, and how many calls does a request wait for?), then solve latency <= "
                                "max_latency for C",
                                formula="batching: t_0 + C t_1 <= W, so C = floor((W - t_0) / t_1); without: "
                                        "C (t_0 + t_1) <= W, so C = floor(W / (t_0 + t_1))")


# --- 11.3 ------------------------------------------------------------------------------------------

def _per_channel(weight):
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    return torch.round(weight / scale).to(torch.int8), scale


@exercise("11.3")
def check_quantize_per_channel(quantize_per_channel) -> None:
    """Exercise 11.3: int8 weights with one scale per output channel ((11.4) per channel)."""
    gen = torch.Generator().manual_seed(11)
    weight = torch.randn(6, 4, 3, 3, generator=gen) * torch.logspace(-2, 0, 6)[:, None, None, None]  # channels of unlike sizes
    answer = quantize_per_channel(weight)
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise ExerciseError("return two tensors: (q, scale)")
    q, scale = answer
    if not isinstance(q, torch.Tensor) or q.dtype != torch.int8:
        raise ExerciseError("q should be a tensor of dtype torch.int8: round, then .to(torch.int8)")
    q = expect_tensor(q, (6, 4, 3, 3), "q")
    scale = torch.as_tensor(scale, dtype=torch.float32)
    right_q, right_scale = _per_channel(weight)
    if scale.numel() == 1:
        raise ExerciseError("one scale for the whole tensor is (11.4) as section 2 did it: give each output channel "
                            "(the first axis) its own scale, from its own largest weight")
    if scale.numel() == 4:
        raise ExerciseError("that is one scale per input channel: the output channel is the first axis of a convolution's weight")
    scale = expect_tensor(scale.reshape(-1, 1, 1, 1), (6, 1, 1, 1), "scale")
    reject_known_mistakes(scale, [(weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 255, "a symmetric int8 range is -127..127: "
                                   "the largest |w| of a channel maps to 127, not 255")])
    if not torch.allclose(scale, right_scale, rtol=1e-5):
        raise ExerciseError("each channel's scale should map its largest |weight| to 127",
                            formula="scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 127")
    if q.abs().max() > 127:
        raise ExerciseError("some q are outside -127..127")
    if not torch.equal(q, right_q):
        if torch.equal(q, torch.floor(weight / right_scale).to(torch.int8)) or torch.equal(q, (weight / right_scale).to(torch.int8)):
            raise ExerciseError("round to the nearest integer: truncating makes errors up to a whole step, not half of one")
        raise ExerciseError("q is each weight divided by its channel's scale, rounded to the nearest integer")
    error = (weight - right_scale * q.float()).abs()
    if not (error <= right_scale / 2 + 1e-7).all():
        raise ExerciseError("some weights are further than half a step from scale x q")
