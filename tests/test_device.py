"""Device choice, seeding, CPU-drawn noise and mixed precision; GPU paths skip where absent."""

import pytest
import torch

from diffedu.course.device import autocast, autocast_dtype, get_device, mps_available, randn, seed_everything, synchronize
from diffedu.course.fast import fast_or_full, is_fast_mode
from diffedu.course.report import environment_report

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
needs_mps = pytest.mark.skipif(not mps_available(), reason="no Apple MPS device on this machine")


def test_default_device_prefers_accelerators(monkeypatch):
    monkeypatch.delenv("DIFFEDU_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
    assert get_device().type == expected


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv("DIFFEDU_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("DIFFEDU_DEVICE", "tpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'.*DIFFEDU_DEVICE"):
        get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_missing_cuda_explains():
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        get_device("cuda")


def test_seeded_noise_is_reproducible_and_cpu_drawn():
    a = randn((3, 4), seed_everything(7))
    b = randn((3, 4), torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, randn((3, 4), torch.Generator().manual_seed(8)))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(-1)


@needs_cuda
def test_cuda_noise_equals_cpu_noise_and_autocast_is_on():
    cpu = randn((5,), torch.Generator().manual_seed(0))
    gpu = randn((5,), torch.Generator().manual_seed(0), "cuda")
    assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    assert autocast_dtype("cuda") in (torch.float16, torch.bfloat16)
    with pytest.raises(ValueError, match="pass a CPU generator"):
        randn((5,), torch.Generator("cuda").manual_seed(0), "cuda")


@needs_mps
def test_mps_noise_equals_cpu_noise_and_stays_float32():
    cpu = randn((5,), torch.Generator().manual_seed(0))
    assert torch.equal(randn((5,), torch.Generator().manual_seed(0), "mps").cpu(), cpu)
    assert autocast_dtype("mps") is None


def test_cpu_stays_float32_unless_asked_and_supported():
    assert autocast_dtype("cpu") is None
    with autocast("cpu"):
        out = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.float32
    from diffedu.course.device import cpu_has_native_bf16

    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert autocast_dtype("cpu", allow_cpu_bf16=True) == expected


def test_fast_mode_switch(monkeypatch):
    monkeypatch.setenv("DIFFEDU_FAST", "1")
    assert is_fast_mode() and fast_or_full(fast=1, full=2) == 1
    monkeypatch.setenv("DIFFEDU_FAST", "0")
    assert not is_fast_mode() and fast_or_full(fast=1, full=2) == 2
    monkeypatch.setenv("DIFFEDU_FAST", "maybe")
    with pytest.raises(ValueError, match="DIFFEDU_FAST must be 1 or 0"):
        is_fast_mode()


def test_environment_report_fits_one_screen():
    text = str(environment_report())
    assert "torch" in text and "device" in text and "fast mode" in text
    assert len(text.splitlines()) <= 25


def test_synchronize_is_a_no_op_on_cpu_and_waits_on_cuda():
    synchronize("cpu")  # nothing queued, nothing to wait for
    if torch.cuda.is_available():
        x = torch.randn(1000, 1000, device="cuda")
        x @ x
        synchronize("cuda")
        assert torch.cuda.current_stream().query()  # all queued work has finished
