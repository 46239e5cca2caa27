"""Classical restoration, the baselines of chapter 10: what a diffusion prior has to beat. Each takes
and returns images (B, 1, H, W) in [-1, 1] (outputs clamped to it).

    bicubic_upsample(y, factor)      super-resolution by bicubic interpolation (PyTorch's)
    gaussian_denoise(y, sigma)       a Gaussian blur of width sigma pixels (SciPy's)
    median_denoise(y, size)          a size x size median filter (SciPy's)
    nearest_fill(y, keep)            inpainting: each missing pixel takes its nearest observed pixel's value
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def _per_image(images: torch.Tensor, fn) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected single-channel images (B, 1, H, W), got {tuple(images.shape)}")
    array = images[:, 0].detach().double().cpu().numpy()
    return torch.from_numpy(np.stack([fn(image) for image in array])).float()[:, None].clamp(-1, 1)


def bicubic_upsample(y: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """Bicubic interpolation of low-resolution images (B, C, h, w) -> (B, C, factor h, factor w)."""
    return F.interpolate(y.float(), scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def gaussian_denoise(y: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """A Gaussian blur of standard deviation sigma pixels: averages the noise away, and the edges with it."""
    return _per_image(y, lambda image: ndimage.gaussian_filter(image, sigma, mode="nearest"))


def median_denoise(y: torch.Tensor, size: int = 3) -> torch.Tensor:
    """The median of each size x size neighbourhood: keeps edges better than a blur, removes outliers."""
    return _per_image(y, lambda image: ndimage.median_filter(image, size=size, mode="nearest"))


def nearest_fill(y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each missing pixel (keep = 0) takes the value of the nearest observed one (keep = 1), per image.
    keep: (1 or B, 1, H, W) of zeros and ones, with at least one observed pixel per image."""
    keep = keep.expand_as(y).bool()
    if not keep.flatten(1).any(1).all():
        raise ValueError("every image needs at least one observed pixel (keep = 1) to fill from")
    filled = []
    for image, observed in zip(y[:, 0].detach().cpu().numpy(), keep[:, 0].cpu().numpy()):
        _, (rows, cols) = ndimage.distance_transform_edt(~observed, return_indices=True)
        filled.append(image[rows, cols])
    return torch.from_numpy(np.stack(filled)).float()[:, None].clamp(-1, 1)
