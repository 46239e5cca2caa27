"""mnist-unet: the class-conditional UNet of chapter 03, in pixel space, with classifier-free guidance.

    python -m diffedu train mnist-unet      (its model card records how long it took, and on what)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.losses import DiffusionSettings, diffusion_loss_fn
from diffedu.metrics import evaluate_samples
from diffedu.models import build_seeded, count_parameters
from diffedu.models.checkpoints import model_card, read_checkpoint, save_checkpoint, stop_if_interrupted
from diffedu.models.unet import UNet, UNetConfig, unet_from_saved
from diffedu.generate import generate, get_sampler
from diffedu.schedules import NoiseSchedule
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel

NAME = "mnist-unet"
MODEL_CONFIG = UNetConfig(patch_size=2, base_channels=32, channel_mults=(1, 2))
DIFFUSION = DiffusionSettings()
TRAIN = TrainConfig(train_steps=4000, batch_size=64, lr=2e-3, warmup_steps=200, ema_decay=0.995, time_budget_minutes=29)
# For several GPUs (`--config big`, chapter 03 "Training on several GPUs"): full 28 x 28 resolution, 4x the
# channels, two ResBlocks per level: 24.5M parameters, 8.7 GFLOPs per image forward (the default: 0.65M,
# 0.094). Not trained or measured here; the README estimates its GPU time on paper.
BIG_MODEL_CONFIG = UNetConfig(patch_size=1, base_channels=128, channel_mults=(1, 2, 2), num_res_blocks=2, dropout=0.1)
BIG_TRAIN = TrainConfig(train_steps=50_000, batch_size=512, lr=1e-3, warmup_steps=1000, ema_decay=0.9999,
                        checkpoint_every=1000)
CONFIGS = {"default": (MODEL_CONFIG, TRAIN), "big": (BIG_MODEL_CONFIG, BIG_TRAIN)}


def build(config: UNetConfig = MODEL_CONFIG, seed: int = 0) -> UNet:
    """A freshly initialised UNet: the same initial weights for the same seed (the global random
    stream is left alone)."""
    return build_seeded(lambda: UNet(config), seed)


def train(run_dir: Path, out_folder: Path, config_name: str = "default", measure: bool = True,
          **overrides) -> dict:
    """Train the UNet of CONFIGS[config_name] (resuming from run_dir); save its EMA weights and a card
    with FID and accuracy."""
    model_config, train_config = CONFIGS[config_name]
    config = replace(train_config, **overrides)
    schedule = DIFFUSION.noise_schedule()
    train_set = load_mnist("train")
    model = build(model_config)
    print(f"UNet with {count_parameters(model) / 1e6:.2f}M parameters")
    result = train_loop(model, diffusion_loss_fn(schedule, DIFFUSION), (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    card = model_card(NAME, config, result, {
        "diffusion": DIFFUSION.to_dict(), "parameters": count_parameters(ema),
        "metrics": evaluate((ema, schedule), 1000) if result.finished and measure else {},
        "notes": "EMA weights. Class-conditional; class 10 is the null class for classifier-free guidance.",
    })
    card["config_name"] = config_name
    save_checkpoint(ema, NAME, {"unet": model_config.to_dict(), "diffusion": DIFFUSION.to_dict()}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> tuple[UNet, NoiseSchedule]:
    """The UNet (EMA weights) and the noise schedule it was trained with."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device), DiffusionSettings.from_dict(config["diffusion"]).noise_schedule()


def sample(model: tuple[UNet, NoiseSchedule], n: int, sampler: str = "ddim", steps: int | None = None,
           **options) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1]; options as `diffedu.generate.generate` (default: DDIM, 50 steps)."""
    unet, schedule = model
    if steps is None and not get_sampler(sampler).all_steps:
        steps = MODEL.default_steps
    return generate(unet, n, sampler, steps, schedule=schedule, **options)


def evaluate(model: tuple[UNet, NoiseSchedule], n: int) -> dict:
    """FID, accuracy and time of n samples (DDIM 50) for guidance w = 1, 1.5 and 2."""
    return evaluate_samples(lambda n, labels, guidance, steps, seed: sample(model, n, steps=steps, seed=seed, labels=labels,
                                                                            guidance=guidance), n)


MODEL = NamedModel(
    name=NAME, chapter=3, summary="class-conditional pixel-space UNet", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, recommended_guidance=1.5, configs=tuple(CONFIGS),
    evaluation_n=1000,
    headline={"FID (w = 1.5)": ("guidance_1.5", "fid"), "accuracy": ("guidance_1.5", "accuracy")},
)
