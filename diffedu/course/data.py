"""MNIST from the course's own offline copy (data/mnist.npz), as tensors in [-1, 1].

    train = load_mnist("train", subset=10_000)
    train.images  # (N, 1, 28, 28) float32 in [-1, 1]
    train.labels  # (N,) int64 in 0..9
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffedu.course.paths import DATA_ENV_VAR, data_dir

MNIST_FILE = "mnist.npz"
MNIST_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
MNIST_SIZES = {"train": 60_000, "test": 10_000}
_verified: set[tuple[str, int, int]] = set()  # (path, size, mtime) of files already checked


class MnistFileError(RuntimeError):
    """The MNIST file is missing or damaged; the message says how to get a good copy."""


@dataclass
class MnistData:
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [-1, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return self.labels.shape[0]


def _how_to_fix(path: Path) -> str:
    return (
        f"The course ships MNIST in its repository as data/{MNIST_FILE}. Restore it with "
        f"`git checkout -- data/{MNIST_FILE}` in your clone (or clone the course again), or "
        f"point the {DATA_ENV_VAR} environment variable at a folder holding a good copy. "
        f"Expected file: {path}"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def mnist_path() -> Path:
    return data_dir() / MNIST_FILE


def verify_mnist_file(path: Path | None = None) -> Path:
    """Check that the MNIST file exists and has the expected SHA-256; return its path."""
    path = Path(path) if path is not None else mnist_path()
    if not path.is_file():
        raise MnistFileError(f"MNIST file not found. {_how_to_fix(path)}")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        actual = sha256_of(path)
        if actual != MNIST_SHA256:
            raise MnistFileError(
                f"MNIST file is damaged or not the course's copy (SHA-256 {actual[:12]}..., "
                f"expected {MNIST_SHA256[:12]}...). {_how_to_fix(path)}"
            )
        _verified.add(key)
    return path


def load_mnist(
    split: str = "train",
    subset: int | None = None,
    digits: list[int] | tuple[int, ...] | None = None,
    path: Path | str | None = None,
) -> MnistData:
    """Load MNIST as float32 images in [-1, 1] and int64 labels.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        subset: keep only the first `subset` images (after the digit filter).
        digits: keep only these classes, e.g. [0, 1].
        path: the .npz file (default: data/mnist.npz, or $DIFFEDU_DATA/mnist.npz).
    Raises:
        MnistFileError: the file is missing or its checksum is wrong (the message says what to do).
        ValueError: for an unknown split, a bad subset or digits outside 0..9.
    """
    if split not in MNIST_SIZES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset is not None and (not isinstance(subset, int) or subset < 1):
        raise ValueError(f"subset must be a positive int or None, got {subset!r}")
    if digits is not None and (len(digits) == 0 or any(d not in range(10) for d in digits)):
        raise ValueError(f"digits must be a non-empty list of classes 0..9, got {digits!r}")

    file = verify_mnist_file(Path(path) if path is not None else None)
    try:
        with np.load(file) as arrays:
            images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise MnistFileError(f"MNIST file could not be read ({error}). {_how_to_fix(file)}") from None

    if digits is not None:
        keep = np.isin(labels, digits)
        images, labels = images[keep], labels[keep]
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1) / 127.5 - 1.0  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return MnistData(images=x, labels=y)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1], shape (N, 1, H, W) or (N, H, W), to uint8 pixels (N, H, W)."""
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(f"expected one channel (N, 1, H, W), got {tuple(images.shape)}")
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(f"expected (N, 1, H, W) or (N, H, W), got {tuple(images.shape)}")
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).numpy()
