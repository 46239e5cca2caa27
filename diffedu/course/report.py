"""A one-screen report of the environment: versions, device, memory, fast mode, data.

Chapter 00 prints it; paste it into a question when something does not work.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass

import torch

from diffedu.course.device import cpu_has_native_bf16, get_device
from diffedu.course.fast import is_fast_mode
from diffedu.course.paths import data_dir

PACKAGES = ("torch", "numpy", "diffusers", "transformers", "matplotlib", "ipywidgets", "jupyterlab")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _total_memory_gb() -> float | None:
    """Physical memory in GB (Linux and macOS), None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return None


@dataclass
class EnvironmentReport:
    python: str
    platform: str
    packages: dict[str, str]
    device: str
    device_name: str
    device_memory_gb: float | None
    cpu_threads: int
    cpu_native_bf16: bool
    ram_gb: float | None
    fast_mode: bool
    data_dir: str
    on_colab: bool

    def __str__(self) -> str:
        def gb(value: float | None) -> str:
            return "unknown" if value is None else f"{value:.1f} GB"

        rows = [
            ("python", self.python),
            ("platform", self.platform),
            *self.packages.items(),
            ("device", f"{self.device} ({self.device_name})"),
            ("device memory", gb(self.device_memory_gb)),
            ("cpu threads", str(self.cpu_threads)),
            ("cpu native bf16", "yes" if self.cpu_native_bf16 else "no"),
            ("ram", gb(self.ram_gb)),
            ("fast mode", "on (DIFFEDU_FAST=1)" if self.fast_mode else "off (full quality)"),
            ("data", self.data_dir),
            ("colab", "yes" if self.on_colab else "no"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def environment_report() -> EnvironmentReport:
    """Collect versions, device, memory, fast mode and data location into one report."""
    device = get_device()
    device_name, device_memory = platform.processor() or platform.machine(), None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        device_name, device_memory = props.name, props.total_memory / 1e9
    elif device.type == "mps":
        device_name = "Apple GPU (shares system memory)"
    return EnvironmentReport(
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages={name: _version(name) for name in PACKAGES},
        device=device.type,
        device_name=device_name,
        device_memory_gb=device_memory,
        cpu_threads=torch.get_num_threads(),
        cpu_native_bf16=cpu_has_native_bf16(),
        ram_gb=_total_memory_gb(),
        fast_mode=is_fast_mode(),
        data_dir=str(data_dir()),
        on_colab="google.colab" in sys.modules,
    )
