"""Working with a VAE's latents (chapter 04), for the course's VAE (diffedu.models.vae) and for
Stable Diffusion's AutoencoderKL (diffusers) alike:

    images (N, C, H, W) ─encode─> posterior mean, log-variance (N, c, h, w)
                        ─sample_posterior, eq. (4.2)─> z ─ * scaling_factor, eq. (4.8)─> what diffusion sees
    images <─decode─ z = latents / scaling_factor

Both VAEs keep their scale factor in vae.config.scaling_factor.
"""

from __future__ import annotations

import torch

from diffedu.metrics import psnr, ssim
from diffedu.models.vae import sample_posterior


def _posterior(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = vae.encode(images)
    if hasattr(out, "latent_dist"):  # diffusers' AutoencoderKL returns a distribution
        return out.latent_dist.mean, out.latent_dist.logvar
    return out  # the course's VAE returns (mean, log_var)


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance of q(z | x), each (N, c, h, w) on the CPU, for images
    (N, C, H, W) in [-1, 1], in batches."""
    device = next(vae.parameters()).device
    parts = [_posterior(vae, images[i: i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    return torch.cat([m.float().cpu() for m, _ in parts]), torch.cat([v.float().cpu() for _, v in parts])


@torch.no_grad()
def decode(vae, latents: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] on the CPU from unscaled latents z (N, c, h, w), in batches."""
    device = next(vae.parameters()).device
    parts = []
    for i in range(0, len(latents), batch_size):
        out = vae.decode(latents[i: i + batch_size].to(device))
        parts.append(getattr(out, "sample", out).float().clamp(-1, 1).cpu())  # AutoencoderKL: .sample
    return torch.cat(parts)


def latent_scale_factor(mean: torch.Tensor, log_var: torch.Tensor, seed: int = 0) -> float:
    """1 / std of latents z ~ q(z | x) over a data set, eq. (4.8): the factor that gives the
    diffusion model unit-variance inputs, computed as Rombach et al. computed 0.18215."""
    z = sample_posterior(mean, log_var, torch.Generator().manual_seed(seed))
    return 1.0 / z.float().std().item()


def scaled_latents(mean: torch.Tensor, log_var: torch.Tensor, scaling_factor: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """What a latent diffusion model trains on: scaling_factor * z, z ~ q(z | x), eqs. (4.2) and (4.8)."""
    return scaling_factor * sample_posterior(mean, log_var, generator)


@torch.no_grad()
def reconstruction_metrics(vae, images: torch.Tensor, pad: int = 0, batch_size: int = 128) -> dict:
    """Mean PSNR (4.6) and SSIM (4.7) of reconstructions decode(posterior mean) of images
    (N, C, H, W) in [-1, 1]; pad > 0 pads the images with background (-1) for the VAE and crops
    the reconstructions back (mini Stable Diffusion's VAE wants 32 x 32 MNIST)."""
    padded = torch.nn.functional.pad(images, (pad,) * 4, value=-1.0) if pad else images
    mean, _ = encode(vae, padded, batch_size)
    reconstructions = decode(vae, mean, batch_size)
    if pad:
        reconstructions = reconstructions[..., pad:-pad, pad:-pad]
    return {"n": len(images), "psnr_db": round(psnr(reconstructions, images).mean().item(), 3),
            "ssim": round(ssim(reconstructions, images).mean().item(), 4)}
