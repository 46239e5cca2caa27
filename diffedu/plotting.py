"""Figures the chapters show: image grids, schedule curves, 2-D point clouds, animations."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from diffedu.schedules import NoiseSchedule


def _as_image_batch(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) in [-1, 1] (float) or 0..255 (uint8) -> (N, H, W) in [0, 1]."""
    array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected images of shape (N, 1, H, W), (N, H, W) or (H, W), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip((array + 1) / 2, 0, 1)


def image_grid(images: torch.Tensor | np.ndarray, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile images into one (rows*H, nrow*W) array in [0, 1] with `padding` pixels between."""
    batch = _as_image_batch(images)
    n, h, w = batch.shape
    ncol = min(nrow, n)
    nrows = -(-n // ncol)
    grid = np.ones((nrows * (h + padding) - padding, ncol * (w + padding) - padding), dtype=np.float32)
    for i, image in enumerate(batch):
        r, c = divmod(i, ncol)
        grid[r * (h + padding): r * (h + padding) + h, c * (w + padding): c * (w + padding) + w] = image
    return grid


def show_images(images, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.8):
    """Show a batch of grey-scale images as one grid. Returns the matplotlib Axes."""
    grid = image_grid(images, nrow=nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * grid.shape[1] / 30 + 0.5, scale * grid.shape[0] / 30 + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_noising(x0: torch.Tensor, schedule: NoiseSchedule, timesteps: Sequence[int], noise: torch.Tensor):
    """One row per image of x0 (N, 1, H, W), one column per code timestep k: x_{k+1} from eq. (1.5)."""
    from diffedu.schedules import q_sample

    fig, axes = plt.subplots(1, len(timesteps), figsize=(1.6 * len(timesteps), 1.6 * x0.shape[0] ** 0.5 + 0.6))
    for ax, t in zip(np.atleast_1d(axes), timesteps):
        x_t = q_sample(x0, int(t), noise, schedule)
        show_images(x_t, nrow=1, ax=ax)
        ax.set_title(f"code k = {t}\nalpha_bar = {schedule.alpha_bar[t]:.3f}", fontsize="small")
    fig.tight_layout()
    return fig


def plot_schedules(schedules: Sequence[NoiseSchedule]):
    """alpha_bar and log SNR against the timestep for several schedules side by side (chapter 01)."""
    fig, (ax_bar, ax_snr) = plt.subplots(1, 2, figsize=(10, 3.5))
    for schedule in schedules:
        steps = np.arange(schedule.num_steps)
        ax_bar.plot(steps, schedule.alpha_bar.cpu().numpy(), label=schedule.name)
        ax_snr.plot(steps, np.log(schedule.snr.double().cpu().numpy()), label=schedule.name)
    ax_bar.set(xlabel="code timestep k (paper t = k + 1)", ylabel="alpha_bar", title="fraction of the signal's variance left")
    ax_snr.set(xlabel="code timestep k (paper t = k + 1)", ylabel="log SNR", title="log signal-to-noise ratio")
    for ax in (ax_bar, ax_snr):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_points(point_sets: dict[str, torch.Tensor], limit: float = 2.0, size: float = 3.0):
    """Scatter plots of 2-D point clouds side by side, e.g. data vs samples."""
    fig, axes = plt.subplots(1, len(point_sets), figsize=(size * len(point_sets), size), squeeze=False)
    for ax, (title, points) in zip(axes[0], point_sets.items()):
        xy = points.detach().cpu().numpy()
        ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.4)
        ax.set(xlim=(-limit, limit), ylim=(-limit, limit), title=title, aspect="equal")
    fig.tight_layout()
    return fig


def animate_images(frames: Sequence[torch.Tensor], labels: Sequence[str] | None = None, nrow: int = 8, interval: int = 120):
    """Animate a sequence of image batches (e.g. a sampling trajectory) as one grid per frame.

    Returns a matplotlib FuncAnimation; in a notebook show it with
    `IPython.display.HTML(anim.to_jshtml())` (needs no ffmpeg).
    """
    if len(frames) == 0:
        raise ValueError("need at least one frame to animate")
    grids = [image_grid(frame, nrow=nrow) for frame in frames]
    fig, ax = plt.subplots(figsize=(grids[0].shape[1] / 30 + 0.5, grids[0].shape[0] / 30 + 0.8))
    image = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    title = ax.set_title(labels[0] if labels else "")

    def update(i: int):
        image.set_data(grids[i])
        title.set_text(labels[i] if labels else f"frame {i}")
        return image, title

    anim = animation.FuncAnimation(fig, update, frames=len(grids), interval=interval, blit=False)
    plt.close(fig)  # the animation is shown by to_jshtml(), not as a static figure
    return anim
