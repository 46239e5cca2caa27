"""The course's named models: how each is trained, saved, loaded and sampled.

    mnist-classifier   the CNN behind accuracy and FID (diffedu.metrics)
    mnist-unet         the class-conditional UNet of chapter 03, with classifier-free guidance

`python -m diffedu train NAME` runs `diffedu.catalog.train_recipe(NAME)`; the notebooks call
the same functions. Chapter 04's VAE and latent model are in diffedu.latent_recipes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffedu.progress import tqdm

from diffedu.catalog import SAMPLERS
from diffedu.checkpoints import hardware_description, read_checkpoint, save_checkpoint
from diffedu.data import MNIST_FILE, MNIST_SHA256, load_mnist
from diffedu.device import randn
from diffedu.guidance import guided_noise_predictor
from diffedu.losses import noise_prediction_loss
from diffedu.metrics import MnistClassifier, accuracy, classification_loss, fid, load_classifier
from diffedu.models.unet import UNet, UNetConfig, count_parameters
from diffedu.samplers import ddim_sample, ddpm_sample
from diffedu.schedules import NoiseSchedule, make_schedule
from diffedu.sde import probability_flow_sample
from diffedu.train import TrainConfig, train


@dataclass
class DiffusionSettings:
    """What the UNet learns on top of its shape and its optimiser (chapter 03)."""

    schedule: str = "cosine"  # noise schedule (chapter 01)
    num_steps: int = 1000  # T
    weighting: str = "min_snr"  # loss weighting, eq. (3.5)
    min_snr_gamma: float = 5.0
    label_drop: float = 0.1  # fraction of labels replaced by the null class, for guidance


MNIST_UNET_MODEL = UNetConfig(patch_size=2, base_channels=32, channel_mults=(1, 2))
MNIST_UNET_TRAIN = TrainConfig(steps=4000, batch_size=64, lr=2e-3, warmup_steps=200, ema_decay=0.995, time_budget_minutes=29)
MNIST_UNET_DIFFUSION = DiffusionSettings()
MNIST_CLASSIFIER_TRAIN = TrainConfig(steps=1500, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.999, checkpoint_every=500)


def diffusion_loss_fn(schedule: NoiseSchedule, settings: DiffusionSettings):
    """loss_fn(model, (images, labels), generator) for `train`: eq. (3.5) with label dropout."""

    def loss_fn(model: UNet, batch: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        images, labels = batch
        if model.null_class is not None:
            drop = torch.rand(labels.shape[0], generator=generator).to(labels.device) < settings.label_drop
            labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        else:
            labels = None
        return noise_prediction_loss(
            model, images, schedule, generator, labels=labels, weighting=settings.weighting, min_snr_gamma=settings.min_snr_gamma
        )

    return loss_fn


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a named model's training; its checkpoint is saved in the run folder."""


def stop_if_interrupted(result) -> None:
    """After `train`: a Ctrl-C ends the recipe here (the run folder has the checkpoint to resume)."""
    if result.interrupted:
        raise TrainingInterrupted(f"interrupted at step {result.step}")


def data_record() -> dict:
    """Which MNIST file a model was trained on (for its model card)."""
    return {"file": MNIST_FILE, "sha256": MNIST_SHA256}


def model_card(command: str, config: TrainConfig, result, extra: dict) -> dict:
    """The model card of a training run: command, config, time, hardware, data, plus `extra`."""
    return {
        "command": command,
        "train_config": config.to_dict(),
        "steps": result.step,
        "finished": result.finished,
        "wall_time_minutes": round(result.elapsed_seconds / 60, 2),
        "images_per_second": round(result.images_per_second, 1),
        "final_loss_mean_last_100": round(sum(result.losses[-100:]) / max(1, len(result.losses[-100:])), 5),
        "hardware": hardware_description(),
        "trained_on": time.strftime("%Y-%m-%d"),
        "data": data_record(),
        **extra,
    }


def train_mnist_classifier(run_dir: Path, out_folder: Path | None = None, config: TrainConfig = MNIST_CLASSIFIER_TRAIN) -> dict:
    """Train and save the metrics classifier; return its model card (with test accuracy)."""
    torch.manual_seed(config.seed)
    train_set, test_set = load_mnist("train"), load_mnist("test")
    model = MnistClassifier()
    result = train(model, classification_loss, (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    classifier = result.ema.cpu().eval()
    test_accuracy = accuracy(classifier, test_set.images, test_set.labels)
    print(f"test accuracy {test_accuracy:.4f}")
    card = model_card("python -m diffedu train mnist-classifier", config, result, {
        "metrics": {"test_accuracy": round(test_accuracy, 4)},
        "notes": "EMA weights. Used for classifier accuracy of samples and FID on its 128 penultimate features.",
    })
    save_checkpoint(classifier, "mnist-classifier", {"feature_dim": MnistClassifier.feature_dim}, card, out_folder)
    return card


def build_unet(config: UNetConfig = MNIST_UNET_MODEL) -> UNet:
    torch.manual_seed(0)  # the same initial weights every time
    return UNet(config)


def train_mnist_unet(
    run_dir: Path,
    out_folder: Path | None = None,
    config: TrainConfig = MNIST_UNET_TRAIN,
    model_config: UNetConfig = MNIST_UNET_MODEL,
    settings: DiffusionSettings = MNIST_UNET_DIFFUSION,
    evaluate: bool = True,
) -> dict:
    """Train the chapter-03 UNet (resuming from run_dir), save its EMA weights and model card."""
    schedule = make_schedule(settings.schedule, settings.num_steps)
    train_set = load_mnist("train")
    model = build_unet(model_config)
    print(f"UNet with {count_parameters(model) / 1e6:.2f}M parameters")
    result = train(model, diffusion_loss_fn(schedule, settings), (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    metrics = evaluate_unet(ema, schedule, n=1000, seed=0) if evaluate and result.finished else {}
    card = model_card("python -m diffedu train mnist-unet", config, result, {
        "diffusion": settings.__dict__,
        "parameters": count_parameters(ema),
        "metrics": metrics,
        "notes": "EMA weights. Class-conditional; class 10 is the null class for classifier-free guidance.",
    })
    full_config = {"unet": model_config.to_dict(), "diffusion": settings.__dict__}
    save_checkpoint(ema, "mnist-unet", full_config, card, out_folder)
    return card


def unet_from_checkpoint(state: dict, config: dict, device: torch.device | str = "cpu") -> tuple[UNet, NoiseSchedule]:
    """The UNet (in eval mode, on `device`) and noise schedule that a diffusion checkpoint's
    weights and config {"unet": ..., "diffusion": ...} describe."""
    model = UNet(UNetConfig.from_dict(config["unet"]))
    model.load_state_dict(state)
    settings = DiffusionSettings(**config["diffusion"])
    return model.to(device).eval(), make_schedule(settings.schedule, settings.num_steps)


def load_mnist_unet(device: torch.device | str = "cpu", folder: Path | None = None) -> tuple[UNet, NoiseSchedule, dict]:
    """The shipped chapter-03 UNet (EMA weights), its noise schedule and its model card."""
    state, config, card = read_checkpoint("mnist-unet", folder)
    return (*unet_from_checkpoint(state, config, device), card)




class SamplingInterrupted(KeyboardInterrupt):
    """Ctrl-C during sampling; `samples` holds the whole batches finished before it."""

    def __init__(self, samples: torch.Tensor):
        super().__init__(f"interrupted after {len(samples)} samples")
        self.samples = samples


@torch.no_grad()
def sample_unet(
    model: UNet,
    schedule: NoiseSchedule,
    n: int,
    sampler: str = "ddim",
    steps: int = 50,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    guidance: float = 1.0,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool = True,
    spacing: str = "trailing",
    clip_x0: float | None = 1.0,
    x_init: torch.Tensor | None = None,
) -> torch.Tensor:
    """n samples (n, C, H, W) from a (conditional) UNet, in [-1, 1] for images; the same seed
    gives the same samples on every device.

    Args:
        sampler: "ddim" (with `steps`), "heun" (the probability-flow ODE solved with Heun's
            method, chapter 07: `steps` steps, 2 * steps - 2 model calls) or "ddpm" (ancestral
            sampling: all T steps when steps = T, else DDIM with eta = 1 on `steps` strided
            timesteps, which is DDPM's posterior step between them, as diffusers' DDPMScheduler).
        labels: (n,) digits to draw, or None for unconditional samples.
        guidance: classifier-free guidance scale w, eq. (3.3) (needs labels).
        spacing: DDIM timesteps, "trailing" (default: the first step starts from the noisiest
            code timestep 999, which measured a lower FID here) or "leading".
        clip_x0: clamp the predicted x_0 at every step, and the result, to +-clip_x0: 1.0 for
            pixels in [-1, 1]; latent models pass their own bound (latent_recipes.LATENT_CLIP).
        x_init: (n, C, H, W) starting noise x_T instead of drawing it from `seed` (DDIM and Heun
            are then a deterministic function of x_init: chapter 06's path length uses this).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels is None and guidance != 1.0:
        raise ValueError("guidance needs labels: pass the digits to draw (e.g. --label 7 or --all-labels)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    shape = (model.config.image_channels, model.config.image_size, model.config.image_size)
    # every x_T in one draw, so that the batch size cannot change them (DDIM and Heun add no
    # other noise: their samples do not depend on batch_size; DDPM's later noise does)
    if x_init is None:
        x_init = randn((n, *shape), generator)
    elif tuple(x_init.shape) != (n, *shape):
        raise ValueError(f"x_init must have shape {(n, *shape)}, got {tuple(x_init.shape)}")
    steps_per_batch = schedule.num_steps if sampler == "ddpm" and steps >= schedule.num_steps else steps
    bar = tqdm(total=steps_per_batch * math.ceil(n / batch_size), desc=f"sampling {n} images ({sampler}, {steps} steps)",
               unit="step", disable=not progress)
    chunks = []  # finished batches, on the CPU
    try:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            if labels is not None:  # these digits, with guidance w
                predictor = guided_noise_predictor(model, labels[start: start + count].to(device), guidance)
            elif model.null_class is not None:  # a conditional model asked for "any digit": the null class
                predictor = guided_noise_predictor(model, torch.full((count,), model.null_class, device=device), 1.0)
            else:  # an unconditional model
                predictor = model
            batch_shape, batch_init = (count, *shape), x_init[start: start + count]
            if sampler == "ddim" or (sampler == "ddpm" and steps < schedule.num_steps):
                eta = 1.0 if sampler == "ddpm" else 0.0
                out = ddim_sample(predictor, batch_shape, schedule, num_steps=steps, generator=generator, device=device,
                                  spacing=spacing, clip_x0=clip_x0, progress=False, x_init=batch_init, eta=eta, on_step=bar.update)
            elif sampler == "heun":
                out = probability_flow_sample(predictor, batch_shape, schedule, steps, "heun", generator, device, spacing,
                                              clip_x0, x_init=batch_init, progress=False, on_step=bar.update)
            else:
                out = ddpm_sample(predictor, batch_shape, schedule, generator=generator, device=device, clip_x0=clip_x0,
                                  progress=False, x_init=batch_init, on_step=bar.update)
            samples = out.samples if clip_x0 is None else out.samples.clamp(-clip_x0, clip_x0)
            chunks.append(samples.cpu())
    except KeyboardInterrupt:
        raise SamplingInterrupted(torch.cat(chunks) if chunks else x_init[:0]) from None
    finally:
        bar.close()
    return torch.cat(chunks)


def evaluate_samples(draw, n: int = 1000, seed: int = 0, steps: int = 50, guidances: tuple[float, ...] = (1.0, 1.5, 2.0)) -> dict:
    """FID (classifier features, vs the first n MNIST test digits), conditional accuracy and
    sampling time for each guidance scale, and the real-vs-real FID of the next n test digits.

    draw(n, labels, guidance, steps, seed) -> images (n, 1, 28, 28) in [-1, 1].
    """
    classifier = load_classifier()
    test_images = load_mnist("test").images
    labels = torch.arange(n) % 10
    results = {"n": n, "sampler": f"ddim{steps} trailing", "seed": seed,
               "fid_real_vs_real": round(fid(classifier, test_images[:n], test_images[n: 2 * n]), 3)}
    for guidance in guidances:
        start = time.perf_counter()
        images = draw(n, labels, guidance, steps, seed)
        results[f"guidance_{guidance}"] = {
            "seconds": round(time.perf_counter() - start, 1),
            "accuracy": round(accuracy(classifier, images, labels), 4),
            "fid": round(fid(classifier, images, test_images[:n]), 3),
        }
    print(json.dumps(results, indent=2))
    return results


def evaluate_unet(model: UNet, schedule: NoiseSchedule, n: int = 1000, seed: int = 0, steps: int = 50, guidances: tuple[float, ...] = (1.0, 1.5, 2.0)) -> dict:
    """evaluate_samples for the pixel-space UNet."""

    def draw(n: int, labels: torch.Tensor, guidance: float, steps: int, seed: int) -> torch.Tensor:
        return sample_unet(model, schedule, n, steps=steps, seed=seed, labels=labels, guidance=guidance)

    return evaluate_samples(draw, n, seed, steps, guidances)
