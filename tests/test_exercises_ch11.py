"""Chapter 11 checkers: stub -> not attempted, wrong -> its own hint, reference -> correct; hints staged."""

import torch

from diffedu.exercises import ch11
from solutions import ch11 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch11.check_predict_throughput(stub), ch11.check_users_within(stub),
                   ch11.check_quantize_per_channel(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch11.check_predict_throughput(reference.solution_predict_throughput)) == "Exercise 11.1: correct"
    assert ch11.check_users_within(reference.solution_users_within)
    assert ch11.check_quantize_per_channel(reference.solution_quantize_per_channel)


def test_throughput_mistakes_get_their_hints():
    assert "limit for very large batches" in wrong_message(
        ch11.check_predict_throughput(lambda batch, b1, s1, b2, s2: (b2 - b1) / (s2 - s1)))
    assert "its inverse" in wrong_message(ch11.check_predict_throughput(
        lambda batch, b1, s1, b2, s2: 1 / reference.solution_predict_throughput(batch, b1, s1, b2, s2)))
    assert "measured batch" in wrong_message(ch11.check_predict_throughput(lambda batch, b1, s1, b2, s2: b2 / s2))
    stages = hint_stages(ch11.check_predict_throughput, lambda batch, b1, s1, b2, s2: batch / s2)
    assert "The formula" not in stages[0] and "The formula" in stages[2]


def test_users_mistakes_get_their_hints():
    def fixed_once_always(max_latency, fixed, per_image, batching):
        return max(0, int((max_latency - fixed) / per_image))

    def fixed_per_request_always(max_latency, fixed, per_image, batching):
        return max(0, int(max_latency / (fixed + per_image)))

    def not_rounded(max_latency, fixed, per_image, batching):
        return (max_latency - fixed) / per_image if batching else max_latency / (fixed + per_image)

    def negative(max_latency, fixed, per_image, batching):
        return int((max_latency - fixed) / per_image) if batching else int(max_latency / (fixed + per_image))

    assert "paid by every request" in wrong_message(ch11.check_users_within(fixed_once_always))
    assert "paid once per batch" in wrong_message(ch11.check_users_within(fixed_per_request_always))
    assert "round down" in wrong_message(ch11.check_users_within(not_rounded))
    assert "no users at all" in wrong_message(ch11.check_users_within(negative))
    stages = hint_stages(ch11.check_users_within, lambda w, f, p, b: 3)
    assert "The formula" not in stages[0] and "The formula" in stages[2]


def test_quantisation_mistakes_get_their_hints():
    def per_tensor(weight):
        scale = weight.abs().max() / 127
        return torch.round(weight / scale).to(torch.int8), scale

    def per_input_channel(weight):
        scale = weight.abs().amax(dim=(0, 2, 3), keepdim=True) / 127
        return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale

    def truncated(weight):
        q, scale = reference.solution_quantize_per_channel(weight)
        return (weight / scale).to(torch.int8), scale

    def range_255(weight):
        scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / 255
        return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale

    def floats(weight):
        q, scale = reference.solution_quantize_per_channel(weight)
        return q.float(), scale

    assert "as section 2 did it" in wrong_message(ch11.check_quantize_per_channel(per_tensor))
    assert "per input channel" in wrong_message(ch11.check_quantize_per_channel(per_input_channel))
    assert "round to the nearest" in wrong_message(ch11.check_quantize_per_channel(truncated))
    assert "not 255" in wrong_message(ch11.check_quantize_per_channel(range_255))
    assert "torch.int8" in wrong_message(ch11.check_quantize_per_channel(floats))
