"""Device, seeding, precision and noise: the same code on CPU, CUDA and Apple MPS.

Three habits keep the course's pictures reproducible on every machine:

1. `get_device()` picks cuda > mps > cpu (override with DIFFEDU_DEVICE=cpu|cuda|mps).
2. Noise is drawn on the CPU from a seeded `torch.Generator` and then moved to the device
   (`randn`), so seed 0 gives the same noise, and so the same picture, on every device.
3. `autocast(device)` turns on mixed precision only where it pays: on CUDA always, on a CPU
   only when it has native bfloat16 and the caller asks for it, never on MPS.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

DEVICE_ENV_VAR = "DIFFEDU_DEVICE"
_KNOWN_DEVICES = ("cpu", "cuda", "mps")


def mps_available() -> bool:
    """True when PyTorch can use an Apple-silicon GPU through Metal (MPS)."""
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def get_device(preferred: str | None = None) -> torch.device:
    """Pick the device to compute on: cuda > mps > cpu.

    Args:
        preferred: "cpu", "cuda" or "mps" to force one. Default: the environment variable
            DIFFEDU_DEVICE if set, otherwise the best available device.

    Raises:
        ValueError: for an unknown name, or a device this machine does not have.
    """
    name = preferred or os.environ.get(DEVICE_ENV_VAR, "").strip().lower() or None
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in _KNOWN_DEVICES:
        raise ValueError(
            f"unknown device {name!r}: choose one of {', '.join(_KNOWN_DEVICES)} "
            f"(check the {DEVICE_ENV_VAR} environment variable)"
        )
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but this PyTorch sees no CUDA GPU: "
            f"unset {DEVICE_ENV_VAR} or set it to 'cpu'"
        )
    if name == "mps" and not mps_available():
        raise ValueError(
            "device 'mps' was requested but MPS is not available (it needs an Apple-silicon "
            f"Mac and a PyTorch build with MPS): unset {DEVICE_ENV_VAR} or set it to 'cpu'"
        )
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and return a CPU generator seeded the same way.

    Pass the returned generator to `randn` (and to the samplers) so that the noise, and
    therefore every picture, is the same on every device.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator(device="cpu").manual_seed(seed)


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """PyTorch's global random stream (what dropout and weight initialisation draw from) on the CPU and
    on `device`, seeded with `seed` inside the block and put back as it was afterwards: what is drawn
    inside depends on `seed` alone, and the caller's random stream is left untouched (diffedu.train
    seeds dropout per step with it, models.build_seeded the initial weights)."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def randn(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise eps ~ N(0, I), drawn on the CPU, then moved to `device`.

    Drawing on the CPU is what makes a seed device-independent: CUDA and MPS have their
    own random number generators, which give different numbers for the same seed.
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"pass a CPU generator (torch.Generator('cpu')), got one on {generator.device}: "
            "noise is drawn on the CPU so that seeds give the same pictures on every device"
        )
    noise = torch.randn(tuple(shape), generator=generator, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    Without it, bfloat16 autocast on a CPU is emulated and usually slower than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(device: torch.device | str, allow_cpu_bf16: bool = False) -> torch.dtype | None:
    """The dtype mixed precision should use on `device`, or None for plain float32.

    Args:
        device: where the model runs.
        allow_cpu_bf16: on a CPU, use bfloat16 when the CPU has native support. Off by
            default: float32 is exact and, without native support, faster.
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu" and allow_cpu_bf16 and cpu_has_native_bf16():
        return torch.bfloat16
    return None  # MPS, and CPUs without native bf16: float32


def autocast(device: torch.device | str, allow_cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """A `with` block that runs the model in mixed precision where that helps, else a no-op."""
    dtype = autocast_dtype(device, allow_cpu_bf16=allow_cpu_bf16)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def synchronize(device: torch.device | str) -> None:
    """Wait until queued GPU work on `device` has finished, so a timer around it measures the
    work and not just its launch (GPUs run asynchronously). Nothing to do on a CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()
