"""The course's named models, for the command line: train, evaluate and sample them by name.

    mnist-classifier   the CNN behind accuracy and FID (chapter 03)     diffedu.recipes
    mnist-unet         class-conditional pixel-space UNet (chapter 03)  diffedu.recipes
    mnist-vae          4 x 7 x 7-latent VAE (chapter 04)                diffedu.latent_recipes
    mnist-ldm          latent diffusion on the VAE's latents (chapter 04)
    mini-sd            text-to-digit Stable Diffusion pipeline (chapter 05)  diffedu.sd.mini

Training writes to runs/NAME/ (resumable checkpoints and the model so far); a finished run is
copied into data/checkpoints only when asked (`--publish`), atomically.

This module imports PyTorch only inside its functions, so `python -m diffedu --help` is quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

RECIPES = ("mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd")
SAMPLEABLE = ("mnist-unet", "mnist-ldm")  # diffusion models: `sample` and `evaluate`
EVALUABLE = ("mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm", "mini-sd")
SAMPLERS = ("ddim", "heun", "ddpm")
# The guidance scale with the lowest FID in each model's evaluation (w = 1, 1.5, 2; model cards).
RECOMMENDED_GUIDANCE = {"mnist-unet": 1.5, "mnist-ldm": 1.5}


def model_files(name: str) -> list[str]:
    """The files (or folders) that make up a saved model, relative to its folder."""
    if name == "mini-sd":
        return ["mini-sd", "mini-sd.json"]
    return [f"{name}.safetensors", f"{name}.json"]


def default_run_dir(name: str) -> Path:
    return Path("runs") / name


def train_recipe(name: str, run_dir: Path | None = None, out_folder: Path | None = None, **overrides) -> dict:
    """Train a named model (see RECIPES), resuming from run_dir (default runs/NAME), and save the
    model and its card into out_folder (default: run_dir). Overrides change TrainConfig fields.
    Returns the model card; card["finished"] says whether all steps were trained."""
    from dataclasses import replace

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(name)
    out_folder = Path(out_folder) if out_folder is not None else run_dir
    if name == "mnist-classifier":
        from diffedu.recipes import MNIST_CLASSIFIER_TRAIN, train_mnist_classifier

        return train_mnist_classifier(run_dir, out_folder, replace(MNIST_CLASSIFIER_TRAIN, **overrides))
    if name == "mnist-unet":
        from diffedu.recipes import MNIST_UNET_TRAIN, train_mnist_unet

        return train_mnist_unet(run_dir, out_folder, replace(MNIST_UNET_TRAIN, **overrides))
    if name == "mnist-vae":
        from diffedu.latent_recipes import MNIST_VAE_TRAIN, train_mnist_vae

        return train_mnist_vae(run_dir, out_folder, replace(MNIST_VAE_TRAIN, **overrides))
    if name == "mnist-ldm":
        from diffedu.latent_recipes import MNIST_LDM_TRAIN, train_mnist_ldm

        return train_mnist_ldm(run_dir, out_folder, replace(MNIST_LDM_TRAIN, **overrides))
    if name == "mini-sd":  # two stages: --steps and --budget-minutes apply to each
        from diffedu.sd.mini import UNET_TRAIN, VAE_TRAIN, train_mini_sd  # imports transformers: only when needed

        return train_mini_sd(run_dir, out_folder, replace(VAE_TRAIN, **overrides), replace(UNET_TRAIN, **overrides))
    raise ValueError(f"unknown model {name!r}: choose one of {', '.join(RECIPES)}")


def publish_model(name: str, source: Path, dest: Path | None = None) -> Path:
    """Copy a finished model from its run folder into dest (default data/checkpoints), atomically."""
    from diffedu.checkpoints import publish

    return publish(model_files(name), Path(source), dest)


def load_sampler(name: str, device=None, folder: Path | None = None) -> Callable:
    """draw(n, sampler, steps, seed, labels, guidance, batch_size) -> images (n, 1, 28, 28) in
    [-1, 1], for a diffusion model from `folder` (default: the shipped one), on `device`."""
    if name == "mnist-unet":
        from diffedu.recipes import load_mnist_unet, sample_unet

        model, schedule, _ = load_mnist_unet(device or "cpu", folder)

        def draw(n, sampler, steps, seed, labels, guidance, batch_size):
            return sample_unet(model, schedule, n, sampler, steps, seed, labels, guidance, batch_size)

        return draw
    if name == "mnist-ldm":
        from diffedu.latent_recipes import load_mnist_ldm

        ldm, _ = load_mnist_ldm(device or "cpu", folder)

        def draw(n, sampler, steps, seed, labels, guidance, batch_size):
            return ldm.sample(n, sampler, steps, seed, labels, guidance, batch_size)

        return draw
    raise ValueError(f"cannot sample {name!r}: choose one of {', '.join(SAMPLEABLE)}")


def evaluate_recipe(name: str, n: int = 1000, folder: Path | None = None, device=None) -> dict:
    """Re-measure a model (default: the shipped one) and write the metrics into its model card:
    FID, accuracy and time for the diffusion models, PSNR and SSIM on the whole test set for
    the VAE, test accuracy for the classifier; for mini-sd, prompt adherence, its VAE's
    reconstructions and the time of 64 images."""
    from diffedu.checkpoints import hardware_description, write_model_card

    device = device or "cpu"
    if name == "mini-sd":
        from diffedu.sd.mini import evaluate_mini_sd  # imports transformers: only when needed

        return evaluate_mini_sd(folder)
    if name == "mnist-unet":
        from diffedu.recipes import evaluate_unet, load_mnist_unet

        model, schedule, card = load_mnist_unet(device, folder)
        metrics = evaluate_unet(model, schedule, n=n, seed=0)
    elif name == "mnist-ldm":
        from diffedu.latent_recipes import evaluate_ldm, load_mnist_ldm

        model, card = load_mnist_ldm(device, folder)
        metrics = evaluate_ldm(model, n=n, seed=0)
    elif name == "mnist-classifier":
        from diffedu.checkpoints import read_model_card
        from diffedu.data import load_mnist
        from diffedu.metrics import accuracy, load_classifier

        card, test = read_model_card(name, folder), load_mnist("test")
        metrics = {"test_accuracy": round(accuracy(load_classifier(device, folder), test.images, test.labels), 4)}
        print(metrics)
    elif name == "mnist-vae":
        from diffedu.data import load_mnist
        from diffedu.latent_recipes import load_mnist_vae, reconstruction_metrics

        vae, scaling_factor, card = load_mnist_vae(device, folder)
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
