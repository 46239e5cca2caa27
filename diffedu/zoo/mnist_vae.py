"""mnist-vae: the VAE of chapter 04, whose 4 x 7 x 7 latents mnist-ldm diffuses.

    python -m diffedu train mnist-vae      (its model card records how long it took, and on what)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.latents import encode, latent_scale_factor, reconstruction_metrics
from diffedu.models import build_seeded, count_parameters
from diffedu.models.checkpoints import model_card, read_checkpoint, save_checkpoint, stop_if_interrupted
from diffedu.models.vae import VAE, VAEConfig, vae_loss
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel

NAME = "mnist-vae"
MODEL_CONFIG = VAEConfig()
BETA = 0.01  # KL weight in eq. (4.5): small, so reconstructions stay sharp (see chapter 04)
TRAIN = TrainConfig(train_steps=2500, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.999, time_budget_minutes=29)


def vae_loss_fn(beta: float = BETA):
    """loss_fn(model, (images,), generator) for `train`: the negative beta-ELBO, eq. (4.5)."""

    def loss_fn(model: VAE, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        return vae_loss(model, batch[0], generator, beta)[0]

    return loss_fn


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the VAE (resuming from run_dir); measure its scale factor on the training set and
    its reconstructions on the whole test set; save EMA weights and model card."""
    config = replace(TRAIN, **overrides)
    train_set = load_mnist("train")
    vae = build_seeded(lambda: VAE(MODEL_CONFIG))  # the same initial weights every time
    print(f"VAE with {count_parameters(vae) / 1e6:.2f}M parameters")
    result = train_loop(vae, vae_loss_fn(BETA), (train_set.images,), config, run_dir)
    stop_if_interrupted(result)
    vae = result.ema.cpu().eval()
    vae.config.scaling_factor = latent_scale_factor(*encode(vae, train_set.images))
    metrics = evaluate(vae, 0) if measure else {}
    card = model_card(NAME, config, result, {
        "beta": BETA, "parameters": count_parameters(vae), "metrics": metrics,
        "notes": "EMA weights. Reconstructions use the posterior mean; scaling_factor = 1 / std of z ~ q(z|x) on the training set.",
    })
    save_checkpoint(vae, NAME, {"vae": vae.config.to_dict(), "beta": BETA}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> VAE:
    """The VAE (EMA weights), its latent scale factor in vae.config.scaling_factor."""
    state, config, _ = read_checkpoint(NAME, folder)
    values = dict(config["vae"])
    if "scaling_factor" in config:  # checkpoints before 2026-12 keep it beside the VAE's config
        values["scaling_factor"] = config["scaling_factor"]
    vae = VAE(VAEConfig.from_dict(values))
    vae.load_state_dict(state)
    return vae.to(device).eval()


def evaluate(vae: VAE, n: int) -> dict:
    """PSNR and SSIM of reconstructions of all 10,000 test digits (n is not used), and the scale factor."""
    metrics = {**reconstruction_metrics(vae, load_mnist("test").images), "latent_scaling_factor": round(vae.config.scaling_factor, 5)}
    return metrics


MODEL = NamedModel(
    name=NAME, chapter=4, summary="4 x 7 x 7-latent VAE", train_config=TRAIN, train=train, load=load, evaluate=evaluate,
    headline={"PSNR dB": ("psnr_db",), "SSIM": ("ssim",)},
)
