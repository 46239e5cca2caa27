"""Chapter 11's deployment code (diffedu/deploy/): the sampler as one ONNX graph equals PyTorch's, the
batcher gathers and splits requests without mixing them up, the service answers good requests with
PNGs and bad ones with a 4xx and one line, batched answers equal one-by-one answers, a short load test
against a real `python -m diffedu serve` on 127.0.0.1 has no errors, the Dockerfile runs the command
the tests start, and the profiling helpers count what they say.
"""

import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from diffedu.deploy import profiling
from diffedu.deploy.batching import DynamicBatcher
from diffedu.deploy.loadtest import check_loopback, closed_loop, running_server, serve_command
from diffedu.deploy.onnx_export import FewStepSampler, OnnxSampler, quantize_int8
from diffedu.deploy.server import DigitGenerator, DigitRequest, create_app, request_noise
from diffedu.zoo import mnist_fast

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def unet():
    return mnist_fast.load()


def png_pixels(content: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(content)))


# --- the exported sampler --------------------------------------------------------------------------

def test_the_unrolled_sampler_is_what_generate_draws(unet):
    labels = torch.arange(12) % 10
    expected = mnist_fast.sample(unet, 12, labels=labels, seed=3, progress=False)
    noise = request_noise(DigitRequest(0, 12, 3, 4))
    with torch.no_grad():
        assert torch.allclose(FewStepSampler(unet, 4)(noise, labels), expected, atol=1e-5)


@pytest.mark.slow  # chapter 11 exports and checks the same sampler in the suite
def test_onnx_runtime_draws_what_pytorch_draws(unet, mnist_fast_onnx):
    """The issue's tolerance: fp32 ONNX Runtime within 1e-4 of PyTorch, at two batch sizes (the batch is free)."""
    onnx = OnnxSampler(mnist_fast_onnx)
    labels = torch.tensor([3, 1, 4, 1, 5, 9, 2])
    noise = request_noise(DigitRequest(0, 7, 11, 4))
    with torch.no_grad():
        expected = FewStepSampler(unet, 4)(noise, labels)
    assert (onnx(noise, labels) - expected).abs().max() <= 1e-4
    assert (onnx(noise[:2], labels[:2]) - expected[:2]).abs().max() <= 1e-4
    assert torch.allclose(onnx.generate(labels, seed=11), expected, atol=1e-4)  # the same noise from the same seed


@pytest.mark.slow  # chapter 11 exports and checks the same sampler in the suite
def test_int8_is_smaller_and_close(mnist_fast_onnx, tmp_path):
    int8 = quantize_int8(mnist_fast_onnx, tmp_path / "int8.onnx")
    assert int8.stat().st_size < 0.6 * mnist_fast_onnx.stat().st_size
    labels = torch.arange(10)
    full, small = OnnxSampler(mnist_fast_onnx).generate(labels), OnnxSampler(int8).generate(labels)
    difference = (full - small).abs().mean().item()
    assert 0 < difference < 0.1, difference  # changed, as int8 must, but the same digits


@pytest.mark.slow  # chapter 11 exports and checks the same sampler in the suite
def test_onnx_sampler_errors_teach(tmp_path, mnist_fast_onnx):
    with pytest.raises(FileNotFoundError, match="export_sampler"):
        OnnxSampler(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match=r"noise must have shape \(B, 1, 28, 28\)"):
        OnnxSampler(mnist_fast_onnx)(torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.long))


# --- the batcher -----------------------------------------------------------------------------------

def run_concurrently(batcher, requests, spacing=0.0):
    async def main():
        async def one(i, request):
            await asyncio.sleep(i * spacing)
            return await batcher.submit(request)
        return await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)), return_exceptions=True)
    return asyncio.run(main())


def test_the_batcher_gathers_requests_and_answers_each_its_own():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        return [item * 10 for item in items]

    answers = run_concurrently(DynamicBatcher(run_batch, max_batch=4, max_wait_ms=50), list(range(6)))
    assert [result for result, _ in answers] == [0, 10, 20, 30, 40, 50]
    assert [len(call) for call in calls] == [4, 2]  # at most max_batch, in order of arrival
    assert [size for _, size in answers] == [4, 4, 4, 4, 2, 2]


def test_in_a_worker_thread_the_batcher_answers_the_same():
    batcher = DynamicBatcher(lambda items: [item + 1 for item in items], max_batch=3, max_wait_ms=50, run_in_thread=True)
    answers = run_concurrently(batcher, [1, 2, 3, 4])
    assert answers == [(2, 3), (3, 3), (4, 3), (5, 1)]


def test_the_batcher_counts_images_and_never_overfills():
    sizes = []
    batcher = DynamicBatcher(lambda items: (sizes.append(sum(items)), items)[1], size_of=lambda n: n, max_batch=8,
                             max_wait_ms=50)
    run_concurrently(batcher, [3, 4, 5, 8, 1])
    assert sizes == [7, 5, 8, 1] and batcher.stats.images == 21 and batcher.stats.largest_batch == 8


def test_without_batching_every_request_runs_alone():
    calls = []
    batcher = DynamicBatcher(lambda items: (calls.append(len(items)), items)[1], enabled=False)
    run_concurrently(batcher, list(range(5)))
    assert calls == [1] * 5 and batcher.stats.to_dict()["mean_batch"] == 1.0


def test_a_failing_batch_fails_its_requests_only():
    def run_batch(items):
        if "bad" in items:
            raise ValueError("bad request in the batch")
        return items

    batcher = DynamicBatcher(run_batch, max_batch=2, max_wait_ms=20)
    answers = run_concurrently(batcher, ["a", "bad", "c", "d"])
    assert isinstance(answers[0], ValueError) and isinstance(answers[1], ValueError)
    assert [result for result, _ in answers[2:]] == ["c", "d"]


def test_the_batcher_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        DynamicBatcher(lambda items: items, max_batch=0)


def test_batched_digits_equal_one_by_one_digits():
    generator = DigitGenerator()
    requests = [DigitRequest(7, 3, 0, 4), DigitRequest(2, 1, 5, 4), DigitRequest(7, 2, 0, 2), DigitRequest(0, 4, 9, 4)]
    # (one asks for 2 steps: a batch with two step counts makes two model calls)
    together = generator(requests)
    for request, images in zip(requests, together):
        alone, = generator([request])
        assert images.shape == (request.n, 1, 28, 28)
        assert torch.allclose(images, alone, atol=1e-5)


# --- the service -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    with TestClient(create_app(max_wait_ms=20)) as test_client:
        yield test_client


def test_generate_returns_the_digits_as_one_png(client):
    response = client.post("/generate", json={"digit": 4, "n": 5, "seed": 1})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    pixels = png_pixels(response.content)
    assert pixels.shape == (28, 5 * 28) and pixels.dtype == np.uint8
    generator = DigitGenerator()
    expected, = generator([DigitRequest(4, 5, 1, 4)])
    expected_pixels = torch.cat(list(((expected + 1) * 127.5).round()[:, 0]), dim=1).numpy()
    assert np.abs(pixels.astype(int) - expected_pixels).max() <= 1


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "JSON object"),
    ({"digit": 3, "n": 65}, 422, "n: "),
    ({"digit": 3, "n": 0}, 422, "n: "),
    ({"digit": 12}, 422, "digit: "),
    ({"model": "mnist-huge", "digit": 3}, 404, "unknown model 'mnist-huge'"),
    ({"n": 2}, 422, "give \"digit\""),
    ({"digit": 3, "prompt": "a 3"}, 422, "no \"prompt\""),
    ({"digit": 3, "colour": "red"}, 422, "colour: not a field"),
    ({"digit": 3, "steps": 9}, 422, "steps: mnist-fast (torch) takes 1..8"),
    ({"model": "mini-sd", "prompt": "x" * 201}, 422, "prompt: "),
    ({"model": "mini-sd", "prompt": "a handwritten three " * 6}, 422, "mini-sd reads at most 16"),
    ({"model": "mini-sd", "digit": 3}, 422, "give \"prompt\""),
])
def test_bad_requests_get_a_4xx_and_one_line(client, body, status, words):
    if isinstance(body, bytes):
        response = client.post("/generate", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/generate", json=body)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message
    assert client.get("/health").json()["status"] == "ok"  # and the server goes on


def test_health_and_the_page(client):
    health = client.get("/health").json()
    assert health["batching"] is True and health["max_batch"] == 64 and health["memory_mb"] > 0
    page = client.get("/")
    assert page.status_code == 200 and "/generate" in page.text


def test_concurrent_requests_run_as_one_batch_and_get_their_own_digits(client):
    """Requests in flight together share a model call (X-Batch-Images > 1) and each gets what it
    would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = [{"digit": d, "n": 2, "seed": 100 + d} for d in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda body: client.post("/generate", json=body), bodies))
    assert max(int(response.headers["x-batch-images"]) for response in together) > 2
    for body, response in zip(bodies, together):
        alone = client.post("/generate", json=body)
        assert np.abs(png_pixels(response.content).astype(int) - png_pixels(alone.content).astype(int)).max() <= 1


def test_a_prompt_goes_to_mini_sd(client):
    response = client.post("/generate", json={"model": "mini-sd", "prompt": "a handwritten 3", "n": 2, "steps": 2})
    assert response.status_code == 200, response.text
    assert png_pixels(response.content).shape == (28, 56)


# --- a real server, a short load test ---------------------------------------------------------------

@pytest.mark.slow  # a real server under load: chapter 11 runs one in the suite
def test_a_short_load_test_against_the_real_server():
    """`python -m diffedu serve` in a child process, 10 clients for 2 s on 127.0.0.1: no errors, and the
    batcher ran several requests per model call."""
    with running_server("--max-wait-ms", "10") as url:
        result = closed_loop(url, clients=10, seconds=1.5, max_requests=400, warmup=0.5)
    assert result["errors"] == 0 and result["requests"] >= 20, result
    assert result["mean_batch"] > 1.5 and result["latency_ms"]["p50"] > 0
    assert set(result["server_memory_mb"]) == {"before", "after"}


@pytest.mark.parametrize("url", ["http://10.0.0.7:8000", "http://192.168.1.2", "http://example.com"])
def test_the_load_test_sends_nothing_off_this_machine(url):
    with pytest.raises(ValueError, match="this machine only"):
        check_loopback(url)
    with pytest.raises(ValueError, match="this machine only"):
        closed_loop(url, clients=1, seconds=1)
    check_loopback("http://127.0.0.1:8000")
    check_loopback("http://localhost:1")


def test_loadtest_command_refuses_another_host_in_one_line(capsys):
    from diffedu.__main__ import main

    assert main(["loadtest", "--url", "http://10.0.0.7:8000"]) == 1
    error = capsys.readouterr().err
    assert error.strip().count("\n") == 0 and "this machine only" in error


def test_the_dockerfile_runs_the_command_the_tests_start():
    """Docker cannot run here (no daemon, no registry); what the container runs is checked instead: its
    CMD is `python -m diffedu serve` with the same arguments as serve_command, on 0.0.0.0:8000."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    command = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert command == ["python", *serve_command(8000, "--host", "0.0.0.0")[1:]]
    assert any(line.startswith("FROM python:3.1") for line in lines) and "EXPOSE 8000" in lines


# --- profiling -------------------------------------------------------------------------------------

def test_flops_of_a_convolution_are_counted_by_hand():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert profiling.count_flops(conv, torch.zeros(2, 3, 10, 10)) == 2 * 2 * (3 * 9) * 8 * 10 * 10


def test_the_batch_cost_fit_recovers_a_line():
    fixed, per_image = profiling.fit_batch_cost({1: 0.012, 4: 0.018, 16: 0.042, 64: 0.138})
    assert abs(fixed - 0.010) < 1e-9 and abs(per_image - 0.002) < 1e-9


def test_roofline_and_peak():
    assert profiling.roofline_seconds(1000, 4, 2.5e7, 1e11) == pytest.approx(1.0)
    assert 1e8 < profiling.peak_flops(size=256, repeats=2) < 1e14


def test_time_modules_adds_up_calls():
    layer = torch.nn.Linear(4, 4)
    with profiling.time_modules({"layer": layer}) as totals:
        for _ in range(3):
            layer(torch.zeros(1, 4))
        time.sleep(0.01)
    assert totals["layer calls"] == 3 and 0 < totals["layer"] < 0.01
    layer(torch.zeros(1, 4))
    assert totals["layer calls"] == 3  # the hooks are gone after the block
