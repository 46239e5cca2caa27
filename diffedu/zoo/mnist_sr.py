"""mnist-sr: a x4 upscaler for MNIST (7 x 7 -> 28 x 28), trained the way Stable Diffusion's x4
upscaler is (chapter 10): chapter 03's UNet sees the low-resolution image, brought to 28 x 28, as
a second input channel beside x_t, and the observation's noise level sigma_y as its "class" label.
During training each batch's y = A x_0 + sigma_y n, eq. (10.1), gets a random sigma_y of
restoration.UPSCALER_NOISE_LEVELS, so one model restores clean and noisy low-resolution digits.

    python -m diffedu train mnist-sr        (its model card records how long it took, and on what)
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.course.device import randn
from diffedu.losses import DiffusionSettings, noise_prediction_loss
from diffedu.metrics import psnr, restoration_metrics
from diffedu.models import build_seeded, count_parameters
from diffedu.models.checkpoints import model_card, read_checkpoint, save_checkpoint, stop_if_interrupted
from diffedu.models.unet import UNet, UNetConfig, unet_from_saved
from diffedu.restoration import UPSCALER_NOISE_LEVELS, Downsample, observe, upscale
from diffedu.schedules import NoiseSchedule
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel

NAME = "mnist-sr"
FACTOR = 4  # 28 x 28 <- 7 x 7
MODEL_CONFIG = UNetConfig(patch_size=2, base_channels=32, channel_mults=(1, 2), condition_channels=1,
                          num_classes=len(UPSCALER_NOISE_LEVELS))
DIFFUSION = DiffusionSettings(label_drop=0.0)  # no guidance: the label is the noise level, always known
TRAIN = TrainConfig(train_steps=5000, batch_size=64, lr=2e-3, warmup_steps=200, ema_decay=0.995, time_budget_minutes=20)
EVALUATION_STEPS = 20  # DDIM steps of the measurement in the card


def build(seed: int = 0) -> UNet:
    """A freshly initialised upscaler UNet (the same weights for the same seed)."""
    return build_seeded(lambda: UNet(MODEL_CONFIG), seed)


def upscaler_loss_fn(schedule: NoiseSchedule, settings: DiffusionSettings = DIFFUSION):
    """loss_fn(model, (images, labels), generator) for `diffedu.train.train`: eq. (3.5) for the noise
    of x_t, with the model shown A^+ y for y = A x_0 + sigma_y n, sigma_y drawn per image (10.1)."""
    operator = Downsample(FACTOR)
    levels = torch.tensor(UPSCALER_NOISE_LEVELS)

    def loss_fn(model, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, _ = batch  # the digit labels are not used
        index = torch.randint(0, len(levels), (images.shape[0],), generator=generator)  # (B,)
        low_res = operator(images)  # (B, 1, 7, 7)
        noisy = low_res + levels[index].view(-1, 1, 1, 1).to(images.device) * randn(low_res.shape, generator, images.device)
        condition = operator.pinv(noisy)  # (B, 1, 28, 28)
        return noise_prediction_loss(model, images, schedule, generator, labels=(index.to(images.device), condition),
                                     weighting=settings.weighting, min_snr_gamma=settings.min_snr_gamma)

    return loss_fn


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the upscaler (resuming from run_dir); save its EMA weights and a card with its metrics."""
    config = replace(TRAIN, **overrides)
    schedule = DIFFUSION.noise_schedule()
    train_set = load_mnist("train")
    model = build(config.seed)
    print(f"upscaler UNet with {count_parameters(model) / 1e6:.2f}M parameters")
    result = train_loop(model, upscaler_loss_fn(schedule), (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    card = model_card(NAME, config, result, {
        "diffusion": DIFFUSION.to_dict(), "parameters": count_parameters(ema),
        "metrics": evaluate((ema, schedule)) if result.finished and measure else {},
        "notes": (f"EMA weights. Input channel 2 is A^+ y of a {FACTOR}x block-mean observation y (restoration.Downsample); "
                  f"label i means sigma_y = UPSCALER_NOISE_LEVELS[i] = {UPSCALER_NOISE_LEVELS}."),
    })
    save_checkpoint(ema, NAME, {"unet": MODEL_CONFIG.to_dict(), "diffusion": DIFFUSION.to_dict()}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> tuple[UNet, NoiseSchedule]:
    """The upscaler UNet (EMA weights) and the noise schedule it was trained with."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device), DiffusionSettings.from_dict(config["diffusion"]).noise_schedule()


def evaluate(model: tuple[UNet, NoiseSchedule], n: int = 0, count: int = 500) -> dict:
    """x4 super-resolution of the first `count` test digits (noiseless, DDIM 20 steps, seed 0): the
    course classifier's accuracy on them, FID against test digits 1000..1999, PSNR and SSIM of one
    sample and PSNR of the mean of 4 (restoration_metrics). n is not used: the test set is fixed."""
    unet, schedule = model
    test = load_mnist("test")
    originals, labels = test.images[:count], test.labels[:count]
    y = observe(originals, Downsample(FACTOR))
    start = time.perf_counter()
    samples = [upscale(unet, schedule, y, EVALUATION_STEPS, seed=seed) for seed in range(4)]
    seconds = (time.perf_counter() - start) / 4
    metrics = restoration_metrics(samples[0], originals, labels, test.images[1000:2000])
    metrics.update(count=count, task="sr4", steps=EVALUATION_STEPS, seconds=round(seconds, 1),
                   psnr_mean_of_4=round(psnr(torch.stack(samples).mean(0), originals).mean().item(), 2))
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=10, summary="x4 upscaler (7 x 7 -> 28 x 28)", train_config=TRAIN,
    train=train, load=load, evaluate=evaluate,
    headline={"accuracy": ("accuracy",), "FID": ("fid",)},
)
