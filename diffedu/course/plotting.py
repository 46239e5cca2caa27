"""Figures the chapters show: image grids, schedule curves, 2-D point clouds, animations."""

from __future__ import annotations

import base64
import html
import re
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

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
        steps = np.arange(schedule.num_train_timesteps)
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


# Animations are saved into the notebook as one PNG per frame, so their size is set here:
# frames are drawn at a whole number of screen pixels per image pixel (crisp, and PNG stores
# the repeated pixels almost for free), at most ANIMATION_MAX_FRAMES of them.
ANIMATION_WIDTH_PX = 640  # a frame is drawn at most about this wide
FILM_STRIP_WIDTH_PX = 640  # the static film strip is at most about this wide
ANIMATION_MAX_FRAMES = 25  # longer sequences are subsampled evenly (first and last frame kept)
ANIMATION_BUDGET_BYTES = 1_000_000  # warn when one animation's notebook output is larger
_DPI = 100


def _pixel_scale(width: int, target: int, largest: int = 4) -> int:
    """Screen pixels per image pixel (a whole number, 1..largest) that make `width` near `target`."""
    return max(1, min(largest, target // max(width, 1)))


def _evenly_spaced(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n), always including the first and the last."""
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def _compact_png(fig, dpi: int = _DPI, **savefig_kwargs) -> bytes:
    """The figure as a PNG in grey (or RGB if it has colour), not RGBA: about half the bytes.

    Grey is rounded to 64 levels, which the eye does not tell from 256 in these pictures
    and which saves a further sixth.
    """
    import io

    from PIL import Image

    raw = io.BytesIO()
    fig.savefig(raw, format="rgba", dpi=dpi, **savefig_kwargs)
    width = int(round(fig.get_figwidth() * dpi))
    rgba = np.frombuffer(raw.getvalue(), dtype=np.uint8).reshape(-1, width, 4)
    rgb = rgba[..., :3]
    grey = bool((rgb == rgb[..., :1]).all())
    if grey:
        levels = np.round(rgb[..., 0] / 255 * 63) * (255 / 63)
        image = Image.fromarray(levels.round().astype(np.uint8), "L")
    else:
        image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


class _CompactHTMLWriter(animation.HTMLWriter):
    """matplotlib's HTMLWriter (the JavaScript player), embedding each frame as a compact PNG."""

    def grab_frame(self, **savefig_kwargs):
        if not self.embed_frames:
            return super().grab_frame(**savefig_kwargs)
        if self._hit_limit:
            return None
        frame = base64.encodebytes(_compact_png(self.fig, self.dpi, **savefig_kwargs)).decode("ascii")
        self._total_bytes += len(frame)
        if self._total_bytes >= self._bytes_limit:  # same rule as HTMLWriter: drop frames past the limit
            self._hit_limit = True
            warnings.warn(f"animation reached {self._total_bytes} bytes, more than animation.embed_limit; "
                          "later frames are dropped: pass fewer frames or a smaller max_frames")
        else:
            self._saved_frames.append(frame)
        return None


# matplotlib's player draws its buttons with Font Awesome icons from a CDN: without a network (a
# workshop on bad Wi-Fi, the offline site) the buttons would be blank. The same symbols in plain text:
BUTTON_SYMBOLS = {"fa fa-minus": "&minus;", "fa fa-plus": "+", "fa fa-fast-backward": "&#x23EE;",
                  "fa fa-step-backward": "&#x23F4;&#x23F4;", "fa fa-play fa-flip-horizontal": "&#x25C0;",
                  "fa fa-pause": "&#x23F8;", "fa fa-play": "&#x25B6;", "fa fa-step-forward": "&#x23F5;&#x23F5;",
                  "fa fa-fast-forward": "&#x23ED;"}


def offline_buttons(player_html: str) -> str:
    """matplotlib's player HTML without its link to the Font Awesome CDN, with text symbols on its buttons."""
    player_html = re.sub(r'<link rel="stylesheet"\s+href="https://[^"]*font-awesome[^"]*">', "", player_html)
    for icon, symbol in BUTTON_SYMBOLS.items():
        player_html = player_html.replace(f'<i class="{icon}"></i>', symbol)
    return player_html


def _film_strip_png(grids: Sequence[np.ndarray], labels: Sequence[str], total: int, num_frames: int = 6) -> bytes:
    """A PNG showing `num_frames` of the grids, evenly spaced, each under its label."""
    import textwrap

    picks = _evenly_spaced(len(grids), num_frames)
    h, w = grids[0].shape
    scale = _pixel_scale(w, FILM_STRIP_WIDTH_PX)
    cell_w, cell_h, gap = w * scale, h * scale, 16
    ncol = max(1, min(len(picks), (FILM_STRIP_WIDTH_PX + gap) // (cell_w + gap)))
    nrows = -(-len(picks) // ncol)
    wrapped = [textwrap.fill(labels[i], width=max(12, cell_w // 6)) for i in picks]
    label_px = 14 * max(text.count("\n") + 1 for text in wrapped) + 4
    header_px = 24
    fig_w = max(ncol * (cell_w + gap) + gap, 320)
    fig_h = header_px + nrows * (label_px + cell_h + gap)
    fig = plt.figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI, facecolor="white")
    fig.text(gap / fig_w, 1 - 4 / fig_h, f"{len(picks)} of {total} frames (the animation itself plays where JavaScript runs)",
             va="top", fontsize=9, color="0.3")
    for slot, (i, text) in enumerate(zip(picks, wrapped)):
        r, c = divmod(slot, ncol)
        left = gap + c * (cell_w + gap)
        top = header_px + r * (label_px + cell_h + gap) + label_px
        ax = fig.add_axes((left / fig_w, 1 - (top + cell_h) / fig_h, cell_w / fig_w, cell_h / fig_h))
        ax.imshow(grids[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        ax.set_title(text, fontsize=8, loc="left", pad=3)
    png = _compact_png(fig)
    plt.close(fig)
    return png


class FilmStripAnimation(animation.FuncAnimation):
    """A matplotlib animation that also carries a static film strip of its frames.

    In Jupyter (Lab, Notebook, VS Code, Colab) it plays as matplotlib's JavaScript player.
    The same HTML holds the film strip as a PNG `<img>`, which the player's script hides
    when it starts: where scripts do not run (GitHub's notebook viewer, nbconvert HTML opened
    without JavaScript, an untrusted notebook) the film strip is what shows. Displayed
    directly (last line of a cell), it also offers the strip as image/png for front ends that
    take no HTML (PDF export). `HTML(anim.to_jshtml())` keeps working and gets the same HTML.
    """

    def __init__(self, fig, update, grids: Sequence[np.ndarray], labels: Sequence[str], total: int, interval: int):
        super().__init__(fig, update, frames=len(grids), interval=interval, blit=False)
        self._grids, self._labels, self._total = grids, labels, total
        self._strip_png: bytes | None = None
        self._player_html: str | None = None

    def film_strip_png(self) -> bytes:
        """The static film strip (a few evenly spaced frames with their labels) as PNG bytes."""
        if self._strip_png is None:
            self._strip_png = _film_strip_png(self._grids, self._labels, self._total)
        return self._strip_png

    def to_jshtml(self, fps=None, embed_frames=True, default_mode=None) -> str:
        """matplotlib's JavaScript player, preceded by the film strip that shows where scripts do not run."""
        if self._player_html is None:  # the frames are drawn once; later calls reuse them
            if fps is None:
                fps = 1000 / self._interval
            if default_mode is None:
                default_mode = "loop" if self._repeat else "once"
            with tempfile.TemporaryDirectory() as folder:  # as Animation.to_jshtml, with compact frames
                path = Path(folder, "animation.html")
                self.save(str(path), writer=_CompactHTMLWriter(fps=fps, embed_frames=embed_frames, default_mode=default_mode), dpi=_DPI)
                self._player_html = offline_buttons(path.read_text())
            size = len(self._player_html) + 2 * len(self._strip_base64())  # the strip is in the HTML and beside it
            if size > ANIMATION_BUDGET_BYTES:
                warnings.warn(f"this animation adds {size / 1e6:.1f} MB to the notebook: "
                              "pass fewer or smaller frames (max_frames=..., fewer images per frame)")
        uid = uuid.uuid4().hex  # fresh ids, so the same animation can be shown twice on one page
        alt = html.escape(f"film strip: {self._labels[0]} ... {self._labels[-1]}", quote=True)
        return (
            '<div class="diffedu-animation">\n'
            f'<img id="diffedu-strip-{uid}" alt="{alt}" style="max-width:100%" src="data:image/png;base64,{self._strip_base64()}"/>\n'
            f'<div id="diffedu-player-{uid}" hidden style="display:none">\n{self._player_html}\n</div>\n'
            "<script>\n"
            "(function () {  // JavaScript runs: swap the static film strip for the player\n"
            f'  var strip = document.getElementById("diffedu-strip-{uid}");\n'
            f'  var player = document.getElementById("diffedu-player-{uid}");\n'
            '  if (strip && player) { strip.style.display = "none"; player.hidden = false; player.style.display = "block"; }\n'
            "})();\n"
            "</script>\n"
            "</div>"
        )

    def _strip_base64(self) -> str:
        return base64.b64encode(self.film_strip_png()).decode("ascii")

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {
            "text/html": self.to_jshtml(),
            "image/png": self._strip_base64(),
            "text/plain": f"<animation of {len(self._grids)} of {self._total} frames; its film strip shows where JavaScript does not run>",
        }


def animate_images(frames: Sequence[torch.Tensor], labels: Sequence[str] | None = None, nrow: int = 8, interval: int = 120,
                   max_frames: int = ANIMATION_MAX_FRAMES):
    """Animate a sequence of image batches (e.g. a sampling trajectory) as one grid per frame.

    Args:
        frames: image batches, each (N, 1, H, W) in [-1, 1]; at least one.
        labels: one title per frame (default "frame i").
        nrow: images per row of each grid.
        interval: milliseconds between frames.
        max_frames: longer sequences are subsampled evenly to this many frames (first and last kept),
            which keeps the notebook output under 1 MB.

    Returns a FilmStripAnimation (a matplotlib FuncAnimation). Show it by ending a cell with it,
    or with `IPython.display.HTML(anim.to_jshtml())` (needs no ffmpeg); both carry a static film
    strip for viewers that run no JavaScript.
    """
    if len(frames) == 0:
        raise ValueError("need at least one frame to animate")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"got {len(labels)} labels for {len(frames)} frames: give one label per frame, or none")
    labels = list(labels) if labels is not None else [f"frame {i}" for i in range(len(frames))]
    keep = _evenly_spaced(len(frames), max_frames)
    grids = [image_grid(frames[i], nrow=nrow) for i in keep]
    labels = [labels[i] for i in keep]
    h, w = grids[0].shape
    scale = _pixel_scale(w, ANIMATION_WIDTH_PX)
    title_px = 24
    fig = plt.figure(figsize=(w * scale / _DPI, (h * scale + title_px) / _DPI), dpi=_DPI, facecolor="white")
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + title_px)))  # one screen block per image pixel
    image = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    title = ax.set_title(labels[0], fontsize=10, pad=5)

    def update(i: int):
        image.set_data(grids[i])
        title.set_text(labels[i])
        return image, title

    anim = FilmStripAnimation(fig, update, grids, labels, total=len(frames), interval=interval)
    plt.close(fig)  # shown by the animation's HTML, not as a static figure
    return anim
