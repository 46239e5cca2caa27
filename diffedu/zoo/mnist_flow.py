"""mnist-flow: chapter 03's UNet trained with the flow-matching loss (chapter 08): a class-conditional
velocity field on the straight path x_t = (1 - t) x_0 + t eps, sampled with Euler's method.

Same network, same optimiser, same number of images seen as mnist-unet; only the loss differs.

    python -m diffedu train mnist-flow      (its model card records how long it took, and on what)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.flow import FlowSettings, flow_loss_fn
from diffedu.generate import SamplingInterrupted, generate
from diffedu.metrics import evaluate_samples
from diffedu.models import count_parameters
from diffedu.models.checkpoints import model_card, read_checkpoint, save_checkpoint, stop_if_interrupted
from diffedu.models.unet import UNet, unet_from_saved
from diffedu.train import train as train_loop
from diffedu.zoo import NamedModel
from diffedu.zoo.mnist_unet import MODEL_CONFIG, TRAIN, build

NAME = "mnist-flow"
FLOW = FlowSettings()
EVALUATION_STEPS = 20  # Euler steps for the card's measurements


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the velocity UNet (resuming from run_dir); save its EMA weights and a card with FID and accuracy."""
    config = replace(TRAIN, **overrides)
    train_set = load_mnist("train")
    model = build()
    print(f"UNet with {count_parameters(model) / 1e6:.2f}M parameters, trained as a flow (eq. 8.3)")
    result = train_loop(model, flow_loss_fn(FLOW), (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    card = model_card(NAME, config, result, {
        "flow": FLOW.to_dict(), "parameters": count_parameters(ema),
        "metrics": evaluate(ema, 1000) if result.finished and measure else {},
        "notes": "EMA weights. Predicts the velocity eps - x_0 of eq. (8.2) from (x_t, t * 1000, label); "
                 "class 10 is the null class for classifier-free guidance.",
    })
    save_checkpoint(ema, NAME, {"unet": MODEL_CONFIG.to_dict(), "flow": FLOW.to_dict()}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> UNet:
    """The velocity UNet (EMA weights, eval mode) on `device`."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device)


def sample(model: UNet, n: int, sampler: str = "euler", steps: int | None = None, *, clip_x0: float | None = None,
           **options) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1]; options as `diffedu.generate.generate` (default 20 Euler steps).
    The flows were measured without clamping each step's x_0 (clip_x0=None); their result is clamped to [-1, 1]."""
    try:
        return generate(model, n, sampler, steps or EVALUATION_STEPS, clip_x0=clip_x0, **options).clamp(-1, 1)
    except SamplingInterrupted as interrupted:
        raise SamplingInterrupted(interrupted.samples.clamp(-1, 1)) from None


def evaluate(model: UNet, n: int) -> dict:
    """FID, accuracy and time of n samples (20 Euler steps) for guidance w = 1, 1.25 and 1.5."""
    return evaluate_samples(lambda n, labels, guidance, steps, seed: sample(model, n, steps=steps, seed=seed, labels=labels,
                                                                            guidance=guidance, progress=False),
                            n, steps=EVALUATION_STEPS, guidances=(1.0, 1.25, 1.5), sampler=f"euler{EVALUATION_STEPS}")


MODEL = NamedModel(
    name=NAME, chapter=8, summary="class-conditional pixel-space UNet trained by flow matching", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, recommended_guidance=1.25, prediction="velocity",
    default_steps=EVALUATION_STEPS, evaluation_n=1000,
    headline={"FID (w = 1.25, 20 Euler steps)": ("guidance_1.25", "fid"), "accuracy": ("guidance_1.25", "accuracy")},
)
