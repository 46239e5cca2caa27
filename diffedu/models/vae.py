"""A small convolutional VAE that compresses a 28 x 28 digit into a 4 x 7 x 7 latent (chapter 04).

    x (B, 1, 28, 28) ─encoder─> mean, log_var (B, 4, 7, 7) ─ z = mean + std * eps ─decoder─> logits (B, 1, 28, 28)

The same idea as Stable Diffusion's autoencoder (Rombach et al. 2022), which turns a
512 x 512 x 3 image into a 4 x 64 x 64 latent: 4 channels at 1/8 of the resolution there,
at 1/4 here (MNIST is tiny). The decoder outputs Bernoulli logits, one per pixel.

Images are in [-1, 1] everywhere in the course; the VAE maps them to [0, 1] for its
Bernoulli likelihood, eq. (4.4), and back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffedu.course.device import randn


@dataclass
class VAEConfig:
    """Shape of the VAE (the course's shipped model: diffedu.zoo.mnist_vae.MODEL_CONFIG), and the
    scale factor of its latents, eq. (4.8), once measured (as diffusers' AutoencoderKL.config)."""

    image_channels: int = 1
    image_size: int = 28
    latent_channels: int = 4
    channels: tuple[int, ...] = (32, 64)  # width at 28x28, then at 14x14 and 7x7
    groups: int = 8  # GroupNorm groups
    scaling_factor: float = 1.0  # 1 / std of the latents: set by latents.latent_scale_factor after training

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "VAEConfig":
        values = dict(values)
        values["channels"] = tuple(values["channels"])
        return cls(**values)

    @property
    def latent_size(self) -> int:
        return self.image_size // 4  # two stride-2 downsamplings


class ConvBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv, twice, plus a skip connection (a ResBlock without time)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.GroupNorm(groups, in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + self.skip(x)


class VAE(nn.Module):
    """q(z | x) = N(mean, diag(exp(log_var))) and p(x | z) = Bernoulli(sigmoid(logits)).

    encode(x) -> (mean, log_var), each (B, latent_channels, 7, 7)
    decode(z) -> images in [-1, 1], (B, 1, 28, 28)
    forward(x, generator) -> (logits, mean, log_var), with z drawn by eq. (4.2)
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        if config.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two downsamplings), got {config.image_size}")
        c1, c2 = config.channels
        g = config.groups
        self.encoder = nn.Sequential(
            nn.Conv2d(config.image_channels, c1, 3, padding=1),  # (B, c1, 28, 28)
            ConvBlock(c1, c1, g),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),  # (B, c2, 14, 14)
            ConvBlock(c2, c2, g),
            nn.Conv2d(c2, c2, 3, stride=2, padding=1),  # (B, c2, 7, 7)
            ConvBlock(c2, c2, g),
            nn.GroupNorm(g, c2), nn.SiLU(),
            nn.Conv2d(c2, 2 * config.latent_channels, 3, padding=1),  # (B, 2 * latent, 7, 7): mean and log_var
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(config.latent_channels, c2, 3, padding=1),  # (B, c2, 7, 7)
            ConvBlock(c2, c2, g),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c2, c2, 3, padding=1),  # (B, c2, 14, 14)
            ConvBlock(c2, c1, g),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c1, 3, padding=1),  # (B, c1, 28, 28)
            ConvBlock(c1, c1, g),
            nn.GroupNorm(g, c1), nn.SiLU(),
            nn.Conv2d(c1, config.image_channels, 3, padding=1),  # (B, 1, 28, 28): Bernoulli logits
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.config.latent_size
        return (self.config.latent_channels, size, size)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x) for images (B, 1, 28, 28) in [-1, 1]."""
        cfg = self.config
        if images.ndim != 4 or images.shape[1:] != (cfg.image_channels, cfg.image_size, cfg.image_size):
            raise ValueError(
                f"images must have shape (B, {cfg.image_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(images.shape)}"
            )
        mean, log_var = self.encoder(images).chunk(2, dim=1)  # (B, latent, 7, 7) each
        return mean, log_var.clamp(-30.0, 20.0)  # keep exp(log_var) finite

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits (B, 1, 28, 28) of p(x | z) for latents z (B, latent, 7, 7)."""
        if z.ndim != 4 or z.shape[1:] != self.latent_shape:
            raise ValueError(f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got {tuple(z.shape)}")
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]: the mean of p(x | z), sigmoid(logits), mapped from [0, 1]."""
        return 2 * torch.sigmoid(self.decode_logits(z)) - 1

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        mean, log_var = self.encode(images)
        z = sample_posterior(mean, log_var, generator)
        return self.decode_logits(z), mean, log_var


def sample_posterior(mean: torch.Tensor, log_var: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The reparameterisation trick, eq. (4.2): z = mean + exp(log_var / 2) * eps, eps ~ N(0, I)
    drawn from a CPU generator; gradients flow into mean and log_var."""
    return mean + torch.exp(0.5 * log_var) * randn(mean.shape, generator, mean.device)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(log_var))) || N(0, I)) per sample (B,), summed over latent
    coordinates, eq. (4.3): 1/2 * sum(mean^2 + var - 1 - log_var)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).flatten(1).sum(1)


def vae_loss(vae: VAE, images: torch.Tensor, generator: torch.Generator | None = None, beta: float = 1.0) -> tuple[torch.Tensor, dict]:
    """The negative beta-ELBO per image, eq. (4.5), averaged over the batch:

        loss = E_q[-log p(x | z)] + beta * KL(q(z | x) || p(z))

    with the Bernoulli reconstruction term (4.4), binary cross-entropy summed over pixels,
    estimated with one z per image. Returns (loss, {"reconstruction": ..., "kl": ...}) in nats.
    """
    logits, mean, log_var = vae(images, generator)
    targets = (images + 1) / 2  # [-1, 1] -> [0, 1], the Bernoulli "probabilities" of MNIST
    reconstruction = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").flatten(1).sum(1)  # (B,)
    kl = kl_to_standard_normal(mean.float(), log_var.float())  # (B,)
    loss = (reconstruction + beta * kl).mean()
    return loss, {"reconstruction": reconstruction.mean().detach(), "kl": kl.mean().detach()}
