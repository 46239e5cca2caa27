"""The course's named models, for the command line: train, evaluate and sample them by name.

    mnist-classifier   the CNN behind accuracy and FID (chapter 03)     diffedu.recipes
    mnist-unet         class-conditional pixel-space UNet (chapter 03)  diffedu.recipes
    mnist-vae          4 x 7 x 7-latent VAE (chapter 04)                diffedu.latent_recipes
    mnist-ldm          latent diffusion on the VAE's latents (chapter 04)
    mini-sd            text-to-digit Stable Diffusion pipeline (chapter 05)  diffedu.sd.mini
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from diffedu.checkpoints import hardware_description, write_model_card
from diffedu.latent_recipes import (
    MNIST_LDM_TRAIN, MNIST_VAE_TRAIN, evaluate_ldm, load_mnist_ldm, load_mnist_vae, reconstruction_metrics,
    train_mnist_ldm, train_mnist_vae,
)
from diffedu.data import load_mnist
from diffedu.recipes import (
    MNIST_CLASSIFIER_TRAIN, MNIST_UNET_TRAIN, evaluate_unet, load_mnist_unet, sample_unet, train_mnist_classifier,
    train_mnist_unet,
)

RECIPES = ("mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd")
SAMPLEABLE = ("mnist-unet", "mnist-ldm")  # diffusion models: `sample` and `evaluate`
EVALUABLE = ("mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd")


def train_recipe(name: str, run_dir: Path | None = None, out_folder: Path | None = None, **overrides) -> dict:
    """Train a named model (see RECIPES), resuming from run_dir; overrides change TrainConfig fields."""
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / name
    if name == "mnist-classifier":
        return train_mnist_classifier(run_dir, out_folder, replace(MNIST_CLASSIFIER_TRAIN, **overrides))
    if name == "mnist-unet":
        return train_mnist_unet(run_dir, out_folder, replace(MNIST_UNET_TRAIN, **overrides))
    if name == "mnist-vae":
        return train_mnist_vae(run_dir, out_folder, replace(MNIST_VAE_TRAIN, **overrides))
    if name == "mnist-ldm":
        return train_mnist_ldm(run_dir, out_folder, replace(MNIST_LDM_TRAIN, **overrides))
    if name == "mini-sd":  # two stages: --steps and --budget-minutes apply to each
        from diffedu.sd.mini import UNET_TRAIN, VAE_TRAIN, train_mini_sd  # imports transformers: only when needed

        return train_mini_sd(run_dir, out_folder, replace(VAE_TRAIN, **overrides), replace(UNET_TRAIN, **overrides))
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(RECIPES)}")


def load_sampler(name: str) -> Callable[..., torch.Tensor]:
    """draw(n, sampler, steps, seed, labels, guidance, batch_size) -> images (n, 1, 28, 28) in
    [-1, 1], for a shipped diffusion model."""
    if name == "mnist-unet":
        model, schedule, _ = load_mnist_unet()

        def draw(n, sampler, steps, seed, labels, guidance, batch_size):
            return sample_unet(model, schedule, n, sampler, steps, seed, labels, guidance, batch_size)

        return draw
    if name == "mnist-ldm":
        ldm, _ = load_mnist_ldm()

        def draw(n, sampler, steps, seed, labels, guidance, batch_size):
            return ldm.sample(n, sampler, steps, seed, labels, guidance, batch_size)

        return draw
    raise ValueError(f"cannot sample {name!r}: choose one of {', '.join(SAMPLEABLE)}")


def evaluate_recipe(name: str, n: int = 1000, folder: Path | None = None) -> dict:
    """Re-measure a shipped model and write the metrics into its model card: FID, accuracy and
    time for the diffusion models, PSNR and SSIM on the whole test set for the VAE; for
    mini-sd, prompt adherence, its VAE's reconstructions and the time of 64 images."""
    if name == "mini-sd":
        from diffedu.sd.mini import evaluate_mini_sd  # imports transformers: only when needed

        return evaluate_mini_sd(folder)
    if name == "mnist-unet":
        model, schedule, card = load_mnist_unet(folder=folder)
        metrics = evaluate_unet(model, schedule, n=n, seed=0)
    elif name == "mnist-ldm":
        model, card = load_mnist_ldm(folder=folder)
        metrics = evaluate_ldm(model, n=n, seed=0)
    elif name == "mnist-vae":
        vae, scaling_factor, card = load_mnist_vae(folder=folder)
        metrics = {**reconstruction_metrics(vae, load_mnist("test").images), "latent_scaling_factor": round(scaling_factor, 5)}
        print(metrics)
    else:
        raise ValueError(f"cannot evaluate {name!r}: choose one of {', '.join(EVALUABLE)}")
    metrics["measured_with"] = f"python -m diffedu evaluate {name}"
    metrics["measured_on"] = time.strftime("%Y-%m-%d")
    metrics["hardware"] = hardware_description()
    card["metrics"] = metrics
    write_model_card(name, card, folder)
    return metrics
