"""Chapter 04's named models: the MNIST VAE and the latent diffusion model trained on its latents.

    mnist-vae   a 4 x 7 x 7-latent VAE (diffedu.models.vae), with its latent scale factor
    mnist-ldm   the chapter-03 UNet design on scaled VAE latents, class-conditional with guidance

    images (B, 1, 28, 28) ─VAE encoder─> z (B, 4, 7, 7) ─ * scaling_factor ─> diffusion happens here
    samples <─VAE decoder─ z / scaling_factor <─ DDIM/DDPM in latent space <─ noise (B, 4, 7, 7)

The latent model is trained with `python -m diffedu train mnist-ldm` after `train mnist-vae`;
it records which VAE it was trained on and refuses to load with another one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from diffedu.checkpoints import CheckpointError, checkpoint_paths, file_sha256, read_checkpoint, save_checkpoint
from diffedu.data import load_mnist
from diffedu.metrics import psnr, ssim
from diffedu.models.unet import UNet, UNetConfig, count_parameters
from diffedu.models.vae import VAE, VAEConfig, sample_posterior, vae_loss
from diffedu.recipes import (
    DiffusionSettings, build_unet, diffusion_loss_fn, evaluate_samples, model_card, sample_unet, SamplingInterrupted, stop_if_interrupted,
    unet_from_checkpoint,
)
from diffedu.schedules import NoiseSchedule, make_schedule
from diffedu.train import TrainConfig, train

MNIST_VAE_MODEL = VAEConfig()
MNIST_VAE_BETA = 0.01  # KL weight in eq. (4.5): small, so reconstructions stay sharp (see chapter 04)
MNIST_VAE_TRAIN = TrainConfig(steps=2500, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.999, time_budget_minutes=29)

# The chapter-03 UNet's widths (32, then 64 channels) at the latent's 7 x 7 and 4 x 4 instead of 14 x 14 and 7 x 7.
# (48 channels measured 2.4x slower per call on a 2-core CPU for no gain we could see; 40 was slower still.)
MNIST_LDM_MODEL = UNetConfig(image_channels=4, image_size=7, base_channels=32, channel_mults=(1, 2))
MNIST_LDM_TRAIN = TrainConfig(steps=8000, batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.999, time_budget_minutes=29)
# Sampling clamps the predicted clean latent to +-LATENT_CLIP (5 standard deviations of the scaled
# latents; 99.9% of training latents lie within +-3.2). Not for range, as with pixels, but for
# stability: the first DDIM step from t = 999 divides by sqrt(alpha_bar_999) = 4.9e-5, so without
# the clamp a tiny error in eps becomes a huge z_0 (measured: latents of std 567, accuracy 0.53).
LATENT_CLIP = 5.0
MNIST_LDM_DIFFUSION = DiffusionSettings()


# ---- the VAE ----------------------------------------------------------------------------


def vae_loss_fn(beta: float = MNIST_VAE_BETA):
    """loss_fn(model, (images,), generator) for `train`: the negative beta-ELBO, eq. (4.5)."""

    def loss_fn(model: VAE, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        return vae_loss(model, batch[0], generator, beta)[0]

    return loss_fn


@torch.no_grad()
def encode_images(vae: VAE, images: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance (N, 4, 7, 7) for images (N, 1, 28, 28), in batches
    (on a 2-core CPU, batches of 128 encode about 1.7x faster per image than batches of 1000)."""
    device = next(vae.parameters()).device
    parts = [vae.encode(images[i: i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
    return torch.cat([m for m, _ in parts]).cpu(), torch.cat([v for _, v in parts]).cpu()


@torch.no_grad()
def decode_latents(vae: VAE, latents: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Images (N, 1, 28, 28) in [-1, 1] decoded from (unscaled) latents (N, 4, 7, 7), in batches of 128."""
    device = next(vae.parameters()).device
    return torch.cat([vae.decode(latents[i: i + batch_size].to(device)).cpu() for i in range(0, latents.shape[0], batch_size)])


def latent_scale_factor(mean: torch.Tensor, log_var: torch.Tensor, seed: int = 0) -> float:
    """1 / std of latents z ~ q(z | x) over a data set, eq. (4.8): the factor that gives the
    diffusion model unit-variance inputs, computed as Rombach et al. computed 0.18215."""
    z = sample_posterior(mean, log_var, torch.Generator().manual_seed(seed))
    return 1.0 / z.float().std().item()


@torch.no_grad()
def reconstruction_metrics(vae: VAE, images: torch.Tensor) -> dict:
    """Mean PSNR (dB) and SSIM of reconstructions decode(posterior mean) of `images`."""
    mean, _ = encode_images(vae, images)
    reconstructions = decode_latents(vae, mean)
    return {"n": images.shape[0], "psnr_db": round(psnr(reconstructions, images).mean().item(), 3),
            "ssim": round(ssim(reconstructions, images).mean().item(), 4)}


def train_mnist_vae(run_dir: Path, out_folder: Path | None = None, config: TrainConfig = MNIST_VAE_TRAIN,
                    model_config: VAEConfig = MNIST_VAE_MODEL, beta: float = MNIST_VAE_BETA) -> dict:
    """Train the VAE (resuming from run_dir); measure its scale factor on the training set and
    its reconstructions on the whole test set; save EMA weights and model card."""
    train_set, test_set = load_mnist("train"), load_mnist("test")
    torch.manual_seed(0)  # the same initial weights every time
    vae = VAE(model_config)
    print(f"VAE with {count_parameters(vae) / 1e6:.2f}M parameters")
    result = train(vae, vae_loss_fn(beta), (train_set.images,), config, run_dir)
    stop_if_interrupted(result)
    vae = result.ema.cpu().eval()
    scaling_factor = latent_scale_factor(*encode_images(vae, train_set.images))
    metrics = reconstruction_metrics(vae, test_set.images)
    metrics["latent_scaling_factor"] = round(scaling_factor, 5)
    print(f"test PSNR {metrics['psnr_db']:.2f} dB, SSIM {metrics['ssim']:.4f}, scaling factor {scaling_factor:.4f}")
    card = model_card("python -m diffedu train mnist-vae", config, result, {
        "beta": beta, "parameters": count_parameters(vae), "metrics": metrics,
        "notes": "EMA weights. Reconstructions use the posterior mean; scaling_factor = 1 / std of z ~ q(z|x) on the training set.",
    })
    full_config = {"vae": model_config.to_dict(), "beta": beta, "scaling_factor": scaling_factor}
    save_checkpoint(vae, "mnist-vae", full_config, card, out_folder)
    return card


def load_mnist_vae(device: torch.device | str = "cpu", folder: Path | None = None) -> tuple[VAE, float, dict]:
    """The shipped VAE (EMA weights), its latent scale factor and its model card."""
    state, config, card = read_checkpoint("mnist-vae", folder)
    vae = VAE(VAEConfig.from_dict(config["vae"]))
    vae.load_state_dict(state)
    return vae.to(device).eval(), float(config["scaling_factor"]), card


def _weights_sha256(name: str, folder: Path | None) -> str:
    return file_sha256(checkpoint_paths(name, folder)[0])


def vae_folder_for(folder: Path | None) -> Path | None:
    """Where mnist-ldm in `folder` finds its VAE: beside it when a mnist-vae is there (a run
    that trained both into one folder), else the shipped one (None)."""
    if folder is not None and checkpoint_paths("mnist-vae", folder)[0].is_file():
        return Path(folder)
    return None


# ---- latent diffusion -------------------------------------------------------------------


def latent_diffusion_loss_fn(schedule: NoiseSchedule, settings: DiffusionSettings, scaling_factor: float):
    """loss_fn(model, (mean, log_var, labels), generator): draw z ~ q(z | x) by eq. (4.2),
    scale it by eq. (4.8), then the chapter-03 loss, eq. (3.5), on the latents."""
    pixel_loss = diffusion_loss_fn(schedule, settings)

    def loss_fn(model: UNet, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        mean, log_var, labels = batch
        latents = scaling_factor * sample_posterior(mean, log_var, generator)  # (B, 4, 7, 7), std about 1
        return pixel_loss(model, [latents, labels], generator)

    return loss_fn


@dataclass
class LatentDiffusion:
    """A latent diffusion model: the denoiser, its schedule, and the VAE that maps to pixels."""

    unet: UNet
    schedule: NoiseSchedule
    vae: VAE
    scaling_factor: float

    @torch.no_grad()
    def sample(self, n: int, sampler: str = "ddim", steps: int = 50, seed: int = 0, labels: torch.Tensor | None = None,
               guidance: float = 1.0, batch_size: int = 500, progress: bool = True,
               clip_z0: float | None = LATENT_CLIP, spacing: str = "trailing",
               x_init: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [-1, 1]: sample scaled latents with `sample_unet`, the
        predicted clean latent clamped to +-clip_z0 (see LATENT_CLIP), then decode z / scaling_factor.
        x_init: (n, 4, 7, 7) starting latent noise instead of drawing it from `seed`."""
        try:
            latents = sample_unet(self.unet, self.schedule, n, sampler, steps, seed, labels, guidance, batch_size,
                                  progress=progress, spacing=spacing, clip_x0=clip_z0, x_init=x_init)  # (n, 4, 7, 7)
        except SamplingInterrupted as interrupted:  # decode the batches that were finished
            raise SamplingInterrupted(self.decode(interrupted.samples)) from None
        return self.decode(latents)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (n, 1, 28, 28) in [-1, 1] from scaled latents (n, 4, 7, 7)."""
        if len(latents) == 0:
            return torch.empty(0, 1, 28, 28)
        return decode_latents(self.vae, latents / self.scaling_factor).clamp(-1, 1)


def train_mnist_ldm(run_dir: Path, out_folder: Path | None = None, config: TrainConfig = MNIST_LDM_TRAIN,
                    model_config: UNetConfig = MNIST_LDM_MODEL, settings: DiffusionSettings = MNIST_LDM_DIFFUSION,
                    evaluate: bool = True) -> dict:
    """Train the latent UNet on the latents of the VAE in out_folder (if there is one there,
    else the shipped one), resuming from run_dir; save EMA weights and model card."""
    vae_folder = vae_folder_for(out_folder)
    vae, scaling_factor, _ = load_mnist_vae(folder=vae_folder)
    train_set = load_mnist("train")
    start = time.perf_counter()
    mean, log_var = encode_images(vae, train_set.images)  # once: the VAE is frozen
    encode_seconds = time.perf_counter() - start
    schedule = make_schedule(settings.schedule, settings.num_steps)
    unet = build_unet(model_config)
    print(f"latent UNet with {count_parameters(unet) / 1e6:.2f}M parameters; training set encoded in {encode_seconds:.0f} s")
    loss_fn = latent_diffusion_loss_fn(schedule, settings, scaling_factor)
    result = train(unet, loss_fn, (mean, log_var, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    model = LatentDiffusion(result.ema.cpu().eval(), schedule, vae, scaling_factor)
    metrics = evaluate_ldm(model, n=1000, seed=0) if evaluate and result.finished else {}
    card = model_card("python -m diffedu train mnist-ldm", config, result, {
        "diffusion": settings.__dict__, "parameters": count_parameters(model.unet), "metrics": metrics,
        "encode_training_set_seconds": round(encode_seconds, 1),
        "notes": "EMA weights of the latent UNet; class 10 is the null class. Needs the mnist-vae checkpoint it was trained on.",
    })
    full_config = {"unet": model_config.to_dict(), "diffusion": settings.__dict__,
                   "vae_sha256": _weights_sha256("mnist-vae", vae_folder)}
    save_checkpoint(model.unet, "mnist-ldm", full_config, card, out_folder)
    return card


def load_mnist_ldm(device: torch.device | str = "cpu", folder: Path | None = None) -> tuple[LatentDiffusion, dict]:
    """The shipped latent diffusion model (UNet + schedule + the VAE it was trained on) and its card."""
    state, config, card = read_checkpoint("mnist-ldm", folder)
    vae_folder = vae_folder_for(folder)
    vae, scaling_factor, _ = load_mnist_vae(device, vae_folder)
    if _weights_sha256("mnist-vae", vae_folder) != config["vae_sha256"]:
        raise CheckpointError(
            "mnist-ldm was trained on the latents of a different mnist-vae than the one in the folder: "
            "retrain it with `python -m diffedu train mnist-ldm`, or restore both with `git checkout -- data/checkpoints`"
        )
    unet, schedule = unet_from_checkpoint(state, config, device)
    return LatentDiffusion(unet, schedule, vae, scaling_factor), card


def evaluate_ldm(model: LatentDiffusion, n: int = 1000, seed: int = 0, steps: int = 50,
                 guidances: tuple[float, ...] = (1.0, 1.5, 2.0)) -> dict:
    """evaluate_samples (FID, accuracy, time per guidance scale) for the latent model."""

    def draw(n: int, labels: torch.Tensor, guidance: float, steps: int, seed: int) -> torch.Tensor:
        return model.sample(n, steps=steps, seed=seed, labels=labels, guidance=guidance)

    return evaluate_samples(draw, n, seed, steps, guidances)
