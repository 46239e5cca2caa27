"""mnist-ldm: latent diffusion (chapter 04), the chapter-03 UNet design on mnist-vae's scaled latents.

    images (B, 1, 28, 28) ─VAE encoder─> z (B, 4, 7, 7) ─ * scaling_factor ─> diffusion happens here
    samples <─VAE decoder─ z / scaling_factor <─ DDIM/DDPM in latent space <─ noise (B, 4, 7, 7)

    python -m diffedu train mnist-ldm      after mnist-vae (its model card records how long it took)

It records which VAE it was trained on and refuses to load with another one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.latents import decode, encode, scaled_latents
from diffedu.losses import DiffusionSettings, diffusion_loss_fn
from diffedu.metrics import evaluate_samples
from diffedu.models import build_seeded, count_parameters
from diffedu.models.checkpoints import (
    CheckpointError, checkpoint_paths, file_sha256, folder_beside, model_card, read_checkpoint, save_checkpoint, stop_if_interrupted,
)
from diffedu.models.unet import UNet, UNetConfig, unet_from_saved
from diffedu.models.vae import VAE
from diffedu.generate import SamplingInterrupted, generate, get_sampler
from diffedu.schedules import NoiseSchedule
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel, load as load_named

NAME = "mnist-ldm"
# The chapter-03 UNet's widths (32, then 64 channels) at the latent's 7 x 7 and 4 x 4 instead of 14 x 14 and 7 x 7.
MODEL_CONFIG = UNetConfig(image_channels=4, image_size=7, base_channels=32, channel_mults=(1, 2))
DIFFUSION = DiffusionSettings()
TRAIN = TrainConfig(train_steps=8000, batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.999, time_budget_minutes=29)
# Sampling clamps the predicted clean latent to +-LATENT_CLIP (5 standard deviations of the scaled
# latents). Not for range, as with pixels, but for stability: the first DDIM step from k = 999 (t = T = 1000)
# divides by sqrt(alpha_bar_999) = 4.9e-5, so without the clamp a tiny error in eps becomes a huge z_0.
LATENT_CLIP = 5.0


def latent_diffusion_loss_fn(schedule: NoiseSchedule, settings: DiffusionSettings, scaling_factor: float):
    """loss_fn(model, (mean, log_var, labels), generator): draw z ~ q(z | x) by eq. (4.2),
    scale it by eq. (4.8), then the chapter-03 loss, eq. (3.5), on the latents."""
    pixel_loss = diffusion_loss_fn(schedule, settings)

    def loss_fn(model: UNet, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        mean, log_var, labels = batch
        latents = scaled_latents(mean, log_var, scaling_factor, generator)  # (B, 4, 7, 7), std about 1
        return pixel_loss(model, [latents, labels], generator)

    return loss_fn


@dataclass
class LatentDiffusion:
    """A latent diffusion model: the denoiser, its schedule, and the VAE that maps to pixels."""

    unet: UNet
    schedule: NoiseSchedule
    vae: VAE

    @torch.no_grad()
    def sample(self, n: int, sampler: str = "ddim", steps: int | None = None, *, clip_x0: float | None = LATENT_CLIP,
               **options) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [-1, 1]: scaled latents from `diffedu.generate.generate` (options as
        there, default DDIM 50 steps; the predicted clean latent clamped to +-LATENT_CLIP), decoded from
        z / scaling_factor. x_init: (n, 4, 7, 7) starting latent noise."""
        if steps is None and not get_sampler(sampler).all_steps:
            steps = MODEL.default_steps
        try:
            latents = generate(self.unet, n, sampler, steps, schedule=self.schedule, clip_x0=clip_x0, **options)  # (n, 4, 7, 7)
        except SamplingInterrupted as interrupted:  # decode the batches that were finished
            raise SamplingInterrupted(self.decode(interrupted.samples)) from None
        return self.decode(latents)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (n, 1, 28, 28) in [-1, 1] from scaled latents (n, 4, 7, 7)."""
        if len(latents) == 0:
            return torch.empty(0, 1, 28, 28)
        return decode(self.vae, latents / self.vae.config.scaling_factor)


def vae_sha256(folder: Path | None) -> str:
    return file_sha256(checkpoint_paths("mnist-vae", folder)[0])


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the latent UNet on the latents of the VAE in out_folder (if there is one there,
    else the shipped one), resuming from run_dir; save EMA weights and model card."""
    config = replace(TRAIN, **overrides)
    vae_folder = folder_beside("mnist-vae", out_folder)
    vae = load_named("mnist-vae", folder=vae_folder)
    train_set = load_mnist("train")
    start = time.perf_counter()
    mean, log_var = encode(vae, train_set.images)  # once: the VAE is frozen
    encode_seconds = time.perf_counter() - start
    schedule = DIFFUSION.noise_schedule()
    unet = build_seeded(lambda: UNet(MODEL_CONFIG))  # the same initial weights every time
    print(f"latent UNet with {count_parameters(unet) / 1e6:.2f}M parameters; training set encoded in {encode_seconds:.0f} s")
    loss_fn = latent_diffusion_loss_fn(schedule, DIFFUSION, vae.config.scaling_factor)
    result = train_loop(unet, loss_fn, (mean, log_var, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    model = LatentDiffusion(result.ema.cpu().eval(), schedule, vae)
    card = model_card(NAME, config, result, {
        "diffusion": DIFFUSION.to_dict(), "parameters": count_parameters(model.unet),
        "metrics": evaluate(model, 1000) if result.finished and measure else {},
        "encode_training_set_seconds": round(encode_seconds, 1),
        "notes": "EMA weights of the latent UNet; class 10 is the null class. Needs the mnist-vae checkpoint it was trained on.",
    })
    full_config = {"unet": MODEL_CONFIG.to_dict(), "diffusion": DIFFUSION.to_dict(), "vae_sha256": vae_sha256(vae_folder)}
    save_checkpoint(model.unet, NAME, full_config, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> LatentDiffusion:
    """The latent UNet (EMA weights), its schedule and the VAE it was trained on."""
    state, config, _ = read_checkpoint(NAME, folder)
    vae_folder = folder_beside("mnist-vae", folder)
    vae = load_named("mnist-vae", device, vae_folder)
    if vae_sha256(vae_folder) != config["vae_sha256"]:
        raise CheckpointError(
            "mnist-ldm was trained on the latents of a different mnist-vae than the one in the folder: "
            "retrain it with `python -m diffedu train mnist-ldm`, or restore both with `git checkout -- data/checkpoints`"
        )
    unet = unet_from_saved(state, config["unet"], device)
    return LatentDiffusion(unet, DiffusionSettings.from_dict(config["diffusion"]).noise_schedule(), vae)


def sample(model: LatentDiffusion, n: int, **options) -> torch.Tensor:
    return model.sample(n, **options)


def evaluate(model: LatentDiffusion, n: int) -> dict:
    """FID, accuracy and time of n samples (DDIM 50) for guidance w = 1, 1.5 and 2."""
    return evaluate_samples(lambda n, labels, guidance, steps, seed: model.sample(n, steps=steps, seed=seed, labels=labels,
                                                                                   guidance=guidance), n)


MODEL = NamedModel(
    name=NAME, chapter=4, summary="latent diffusion on mnist-vae's latents", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, recommended_guidance=1.5, evaluation_n=1000,
    headline={"FID (w = 1.5)": ("guidance_1.5", "fid"), "accuracy": ("guidance_1.5", "accuracy")},
)
