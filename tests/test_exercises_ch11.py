"""Chapter 11 checkers: stub -> not attempted, wrong -> its own hint, reference -> correct; hints staged."""

import torch

from diffedu.exercises import ch11
from solutions import ch11 as reference
from exercise_helpers import hint_stages, stub, wrong_message


def test_stubs_are_not_attempted(capsys):
    for result in (ch11.check_predict_throughput(stub), ch11.check_closed_loop_prediction(stub),
                   ch11.check_quantize_per_channel(stub)):
        assert result.status == "not attempted" and not result and "not attempted yet" in repr(result)
    assert capsys.readouterr().out == ""


def test_reference_solutions_pass():
    assert repr(ch11.check_predict_throughput(reference.solution_predict_throughput)) == "Exercise 11.1: correct"
    assert ch11.check_closed_loop_prediction(reference.solution_closed_loop_prediction)
    assert ch11.check_quantize_per_channel(reference.solution_quantize_per_channel)


def test_throughput_mistakes_get_their_hints():
    assert "limit for very large batches" in wrong_message(
        ch11.check_predict_throughput(lambda batch, b1, s1, b2, s2: (b2 - b1) / (s2 - s1)))
    assert "its inverse" in wrong_message(ch11.check_predict_throughput(
        lambda batch, b1, s1, b2, s2: 1 / reference.solution_predict_throughput(batch, b1, s1, b2, s2)))
    assert "measured batch" in wrong_message(ch11.check_predict_throughput(lambda batch, b1, s1, b2, s2: b2 / s2))
    stages = hint_stages(ch11.check_predict_throughput, lambda batch, b1, s1, b2, s2: batch / s2)
    assert "The formula" not in stages[0] and "The formula" in stages[2]


def test_closed_loop_mistakes_get_their_hints():
    def no_queue(clients, fixed, per_image, batching):
        latency = fixed + (clients if batching else 1) * per_image
        return clients / latency, latency

    def pays_fixed_per_image(clients, fixed, per_image, batching):
        latency = clients * (fixed + per_image)
        return clients / latency, latency

    def not_little(clients, fixed, per_image, batching):
        return 1 / (fixed + per_image), fixed + per_image

    assert "C - 1 requests ahead" in wrong_message(ch11.check_closed_loop_prediction(no_queue))
    assert "paid once per batch" in wrong_message(ch11.check_closed_loop_prediction(pays_fixed_per_image))
    assert "Little's law" in wrong_message(ch11.check_closed_loop_prediction(not_little))
    assert "(throughput in requests per second" in wrong_message(ch11.check_closed_loop_prediction(lambda *args: 1.0))


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
