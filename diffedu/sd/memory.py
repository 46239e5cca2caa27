"""Precision and memory savers for a Stable Diffusion pipeline, chosen from the device (chapter 05).

    CPU            float32 (float16 matmuls are slow or missing on CPUs); nothing else
    Apple MPS      float16, attention slicing (the Diffusers docs' advice for Macs)
    CUDA >= 8 GB   float16
    CUDA 4-8 GB    float16 + attention slicing (attention in chunks: less memory, a little slower)
    CUDA < 4 GB    float16 + attention slicing + model CPU offload (each part moves to the GPU
                   only while it runs; needs the `accelerate` package)

SD v1.5 in float16 needs about 3.5 GB for 512 x 512 images without savers (Diffusers docs).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

import torch

SLICING_BELOW_GB = 8.0
OFFLOAD_BELOW_GB = 4.0


@dataclass
class PipelineSettings:
    """What to apply to a pipeline on one device, and why (one line for the notebook)."""

    device: torch.device
    dtype: torch.dtype
    attention_slicing: bool
    cpu_offload: bool
    reason: str


def gpu_memory_gb(device: torch.device) -> float | None:
    """Total memory of a CUDA device in GB, or None for other devices."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 1e9


def choose_settings(device: torch.device, memory_gb: float | None = None) -> PipelineSettings:
    """The table above. memory_gb overrides the measured GPU memory (for tests and what-ifs)."""
    device = torch.device(device)
    if device.type == "cpu":
        return PipelineSettings(device, torch.float32, False, False, "CPU: float32, no memory savers needed")
    if device.type == "mps":
        return PipelineSettings(device, torch.float16, True, False, "Apple GPU: float16 with attention slicing")
    if device.type != "cuda":
        raise ValueError(f"no settings for device type {device.type!r}: use cpu, mps or cuda")
    memory_gb = gpu_memory_gb(device) if memory_gb is None else memory_gb
    if memory_gb is None or memory_gb <= 0:
        raise ValueError(f"GPU memory must be a positive number of GB, got {memory_gb}")
    slicing, offload = memory_gb < SLICING_BELOW_GB, memory_gb < OFFLOAD_BELOW_GB
    if offload and importlib.util.find_spec("accelerate") is None:
        offload = False
        note = " (CPU offload skipped: `pip install accelerate` to enable it)"
    else:
        note = ""
    savers = [name for name, on in (("attention slicing", slicing), ("model CPU offload", offload)) if on]
    reason = f"CUDA GPU with {memory_gb:.1f} GB: float16" + (" + " + " + ".join(savers) if savers else "") + note
    return PipelineSettings(device, torch.float16, slicing, offload, reason)


def apply_settings(pipe, settings: PipelineSettings):
    """Move `pipe` to the settings' dtype and device and switch on the chosen savers; returns pipe."""
    if settings.cpu_offload:
        pipe.to(settings.dtype)
        pipe.enable_model_cpu_offload(device=settings.device)  # moves each part to the GPU when it runs
    else:
        pipe.to(settings.device, settings.dtype)
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    return pipe


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement (CUDA only; the CPU's peak is per process)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Memory in MB: on a CUDA device the peak of allocated tensors since the last reset; on
    Apple MPS the current Metal allocation (MPS keeps no peak); on a CPU the whole process's
    peak resident memory (everything Python has held so far; NaN on Windows)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if device.type == "mps":
        return torch.mps.driver_allocated_memory() / 2**20
    try:
        import resource  # Unix only
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
