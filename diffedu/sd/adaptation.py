"""The data and the measurements of adapting Stable Diffusion (chapter 09): MNIST digits
made bold, slanted or reduced to outlines, and the numbers that say whether an adapted model
learned the change. Images are (B, 1, H, W) in [-1, 1], as everywhere in the course; "ink" is a
pixel above the middle grey (0 in [-1, 1], 0.5 in [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INK_THRESHOLD = 0.0  # in [-1, 1]: 0.5 on a [0, 1] scale


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (B, 1, H, W), got {tuple(images.shape)}")


def bold(images: torch.Tensor) -> torch.Tensor:
    """Thicker strokes: a grey dilation with a 3 x 3 square (each pixel becomes the maximum of its
    neighbourhood), which widens every stroke by a pixel on each side."""
    _check_images(images)
    return F.max_pool2d(images, kernel_size=3, stride=1, padding=1)


def shear(images: torch.Tensor, amount: float = 0.3) -> torch.Tensor:
    """A horizontal shear about the image centre: the pixel at (x, y) moves to (x + amount * (c - y), y),
    with y counted downwards, so a positive amount leans the tops of the digits to the right, as
    italic writing does. Bilinear, with background (-1) outside the image."""
    _check_images(images)
    batch = images.shape[0]
    # grid_sample asks, for every output pixel, where to read the input: the inverse map, x_in = x_out - amount * (c - y)
    # in normalised coordinates (x, y in [-1, 1], y down, centre 0): x_in = x_out + amount * y_out
    theta = torch.tensor([[1.0, amount, 0.0], [0.0, 1.0, 0.0]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta.expand(batch, 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def ink(images: torch.Tensor) -> torch.Tensor:
    """Where the ink is: (B, 1, H, W) bool, pixels above the middle grey."""
    _check_images(images)
    return images > INK_THRESHOLD


def outlines(images: torch.Tensor) -> torch.Tensor:
    """The edge map of each digit, in [-1, 1]: ink pixels with a non-ink pixel among their 8 neighbours
    (the digit minus its erosion by a 3 x 3 square), white on black."""
    inked = ink(images).float()
    eroded = -F.max_pool2d(-inked, kernel_size=3, stride=1, padding=1)  # erosion = - dilation of the negative
    return (inked - eroded) * 2 - 1


def edges(images: torch.Tensor) -> torch.Tensor:
    """An edge map like the ones ControlNet is trained on, in [-1, 1]: the outline traced around each
    stroke, `outlines(bold(images))`. MNIST strokes are only 2-3 pixels wide, so the outline of the
    digit itself is nearly the whole digit; the outline of the thickened digit runs along both sides
    of each stroke, as an edge detector's would, and leaves the stroke's middle open."""
    return outlines(bold(images))


def ink_fraction(images: torch.Tensor) -> torch.Tensor:
    """The share of ink pixels in each image, (B,)."""
    return ink(images).flatten(1).float().mean(1)


def stroke_width(images: torch.Tensor) -> torch.Tensor:
    """The mean width of each digit's strokes in pixels, (B,): its ink area divided by the length of
    its skeleton (scikit-image's `skeletonize`, one pixel wide), about 2-3 for MNIST. Unlike the ink
    fraction it does not grow with how much a digit has to draw (an 8 against a 1)."""
    from skimage.morphology import skeletonize

    inked = ink(images)[:, 0].cpu().numpy()  # (B, H, W) bool
    widths = [mask.sum() / max(1, skeletonize(mask).sum()) for mask in inked]
    return torch.tensor(widths, dtype=torch.float32)


def slant(images: torch.Tensor) -> torch.Tensor:
    """How far each digit leans, (B,): mu_11 / mu_02 of the ink intensities (in [0, 1]), with central moments
    mu_pq = sum (x - x_mean)^p (y_mean - y)^q I(x, y), y counted upwards. A horizontal shear by s adds s
    (`shear`): upright digits give about 0, italic ones a positive number."""
    _check_images(images)
    weights = ((images[:, 0].double() + 1) / 2).clamp(min=0)  # (B, H, W)
    height, width = weights.shape[1:]
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=weights.device),
                          torch.arange(width, dtype=torch.float64, device=weights.device), indexing="ij")
    y = -y  # upwards
    total = weights.sum((1, 2)).clamp(min=1e-12)
    x_mean = (weights * x).sum((1, 2)) / total
    y_mean = (weights * y).sum((1, 2)) / total
    dx, dy = x - x_mean[:, None, None], y - y_mean[:, None, None]
    mu11 = (weights * dx * dy).sum((1, 2))
    mu02 = (weights * dy * dy).sum((1, 2))
    return (mu11 / mu02.clamp(min=1e-12)).float()


def ink_iou(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of the ink of two image batches, per pair, (B,): 1 for the same ink, 0 for none shared."""
    if images_a.shape != images_b.shape:
        raise ValueError(f"need two batches of the same shape, got {tuple(images_a.shape)} and {tuple(images_b.shape)}")
    a, b = ink(images_a).flatten(1), ink(images_b).flatten(1)
    return ((a & b).sum(1).float() / (a | b).sum(1).clamp(min=1).float())
