"""`python -m diffedu restore MODEL --task sr4|denoise|inpaint --in FILE.npz --out FILE.npz` (chapter 10).

The input file holds the observations y of eq. (10.1) as `images`: uint8 pixels 0..255 (as MNIST
and `sample` store them) or floats in [-1, 1] (a noisy observation may stray outside). Shapes:

    sr4       (N, 7, 7)    x4 super-resolution of block means (restoration.Downsample(4))
    denoise   (N, 28, 28)  y = x_0 + sigma_y n, sigma_y = --noise-std (default 0.5)
    inpaint   (N, 28, 28)  plus `mask` (N, 28, 28) or (28, 28): 1 where the pixel is observed, 0 where missing

(N, 1, H, W) works too. The output file holds `images`, uint8 (N, 28, 28). Every mistake gets one
line and exit code 2 before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# task -> (observation's side, methods for mnist-unet (first: default)); mnist-sr does sr4 only. The command
# line's choices are read from here (this module imports no PyTorch at the top, so --help stays quick).
TASKS = {"sr4": (7, ("ddnm", "dps", "sdedit")), "denoise": (28, ("denoise", "dps")), "inpaint": (28, ("ddnm", "dps"))}
METHODS = sorted({method for _, methods in TASKS.values() for method in methods})
RESTORING_MODELS = ("mnist-unet", "mnist-sr")


@dataclass
class Observation:
    images: object  # torch.Tensor (N, 1, side, side) in [-1, 1]-ish
    mask: object | None  # torch.Tensor (N or 1, 1, 28, 28) of 0/1, inpaint only


def read_observation(path: Path, task: str) -> Observation:
    """The observations of `path` for `task`, checked; a ValueError with one line saying what is wrong."""
    import numpy as np
    import torch

    side = TASKS[task][0]
    if not path.is_file():
        raise ValueError(f"--in {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError):
        raise ValueError(f"--in {path} is not a readable .npz file: write one with numpy.savez(path, images=...)") from None
    if "images" not in contents:
        raise ValueError(f"--in {path} has no array called 'images' (it has: {', '.join(contents) or 'nothing'})")
    images = to_batch(contents["images"], side, f"--in {path}: images", task)
    if images.dtype == np.uint8:
        pixels = torch.from_numpy(images.astype(np.float32)) / 127.5 - 1
    elif np.issubdtype(images.dtype, np.floating):
        if not np.isfinite(images).all():
            raise ValueError(f"--in {path}: images hold NaN or infinite values")
        pixels = torch.from_numpy(images.astype(np.float32))
        if task != "denoise" and (pixels.min() < -1.001 or pixels.max() > 1.001):
            raise ValueError(f"--in {path}: float images must lie in [-1, 1] (found {pixels.min():.2f}..{pixels.max():.2f}); "
                             "store uint8 0..255 or rescale")
    else:
        raise ValueError(f"--in {path}: images must be uint8 (0..255) or float in [-1, 1], got {images.dtype}")
    mask = None
    if task == "inpaint":
        if "mask" not in contents:
            raise ValueError(f"--in {path}: inpaint needs a 'mask' array, 1 where a pixel is observed and 0 where missing")
        raw = contents["mask"]
        raw = raw[None] if raw.ndim == 2 else raw
        raw = to_batch(raw, 28, f"--in {path}: mask", task)
        if not np.isin(raw, (0, 1)).all():
            raise ValueError(f"--in {path}: mask must hold only 0 (missing) and 1 (observed)")
        if raw.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"--in {path}: mask has {raw.shape[0]} images for {images.shape[0]} images: give one, or one each")
        mask = torch.from_numpy(raw.astype(np.float32))
    return Observation(pixels, mask)


def to_batch(array, side: int, what: str, task: str):
    """(N, side, side) or (N, 1, side, side) -> (N, 1, side, side), or a one-line ValueError."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1:] != (side, side) or array.shape[0] == 0:
        raise ValueError(f"{what} must have shape (N, {side}, {side}) for --task {task}, got {tuple(array.shape)}")
    return array[:, None]


def restore(name: str, task: str, observation: Observation, method: str, steps: int, noise_std: float, seed: int,
            device="cpu", folder: Path | None = None):
    """Restored images (N, 1, 28, 28) in [-1, 1] of the observation with a named model."""
    from diffedu import restoration, zoo

    unet, schedule = zoo.load(name, device, folder)
    y = observation.images.to(device)
    if name == "mnist-sr":
        return restoration.upscale(unet, schedule, y, steps, noise_std, seed).cpu()
    operator = {"sr4": restoration.Downsample(4), "denoise": restoration.Identity(),
                "inpaint": restoration.Mask(observation.mask) if observation.mask is not None else None}[task]
    return restoration.restore(unet, schedule, y, operator, method, steps, noise_std, seed).cpu()


def check_restore_args(args, parser) -> None:
    """Every mistake in `restore`'s options, one line each (parser.error), before a model is loaded."""
    from diffedu.restoration import UPSCALER_NOISE_LEVELS, noise_level_index

    methods = TASKS[args.task][1]
    if args.name == "mnist-sr":
        if args.task != "sr4":
            parser.error(f"mnist-sr only upscales (--task sr4); for --task {args.task} use mnist-unet")
        if args.method not in (None, "upscaler"):
            parser.error(f"mnist-sr restores with its own network: leave out --method (or use mnist-unet for {args.method})")
        args.method = "upscaler"
        args.noise_std = args.noise_std or 0.0
        try:
            noise_level_index(args.noise_std)  # the check the upscaler itself makes
        except ValueError:
            parser.error(f"mnist-sr knows --noise-std in {', '.join(map(str, UPSCALER_NOISE_LEVELS))}, got {args.noise_std}")
    else:
        if args.method is None:
            args.method = methods[0]
        elif args.method not in methods:
            parser.error(f"--task {args.task} with {args.name} takes --method {' or '.join(methods)}, got {args.method}")
        if args.task == "denoise":
            args.noise_std = 0.5 if args.noise_std is None else args.noise_std
            if args.noise_std <= 0:
                parser.error(f"--noise-std must be > 0 for denoise (the sigma_y of the observation), got {args.noise_std}")
        elif args.noise_std not in (None, 0.0):
            parser.error(f"--noise-std applies to --task denoise and to mnist-sr; {args.task} with {args.name} "
                         "assumes a noiseless observation")
        else:
            args.noise_std = 0.0
    if args.steps is None:
        args.steps = 50 if args.method in ("ddnm", "sdedit") else 100 if args.method == "dps" else 20
    if not 1 <= args.steps <= 1000:
        parser.error(f"--steps must be in 1..1000, got {args.steps}")
    try:
        args.observation = read_observation(args.input, args.task)
    except ValueError as error:
        parser.error(str(error))
