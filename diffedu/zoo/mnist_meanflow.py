"""mnist-meanflow: a MeanFlow model (chapter 08, section 8): the average velocity over any interval, so
that one network call jumps from noise to a digit (eq. 8.19).

MeanFlow needs no teacher: its loss (8.22) is built from real digits, fresh noise and the network's own
Jacobian-vector product (diffedu/meanflow.py). To save compute the network starts from mnist-flow's weights
(a flow is the r = t case of an average velocity) with a second time input for the interval t - r, whose
embedding starts at zero; nothing else of mnist-flow is used. Guidance w = 1.25 is trained in.

    python -m diffedu train mnist-meanflow    (starts from mnist-flow: the one beside it in --out, else the shipped one)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.generate import generate
from diffedu.meanflow import MeanFlowSettings, meanflow_loss_fn
from diffedu.models import count_parameters
from diffedu.models.checkpoints import (checkpoint_paths, file_sha256, folder_beside, model_card, read_checkpoint,
                                        save_checkpoint, stop_if_interrupted)
from diffedu.models.unet import UNet, unet_from_saved
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel
from diffedu.zoo._built_in_guidance import check_request, evaluate_by_steps
from diffedu.zoo import mnist_flow

NAME = "mnist-meanflow"
# three in four samples teach a jump (r < t), with both times uniform: short pilot runs (4 minutes each) drew
# better 1- and 2-call digits so than with the paper's half-as-many logit-normal intervals, meant for training from scratch
MEANFLOW = MeanFlowSettings(interval_fraction=0.75, time_sampling="uniform")
# MeanFlow differentiates the network in t (8.21) and feeds that into its own target. mnist-flow's time embedding of
# t * 1000 has frequencies up to 1000 radians per unit of t: a 29-minute run with all of them (2026-12-06) grew
# |(t - r) du/dt| from about 1.1 |v| (the untrained copy) to about 21 |v| and drew blurred class averages in one call
# (FID 272); with the frequencies above 0.02 per unit of time input (20 per unit of t) dropped, the same run learned the jump
MAX_TIME_FREQUENCY = 0.02
TRAIN = TrainConfig(train_steps=4000, batch_size=64, lr=6e-4, warmup_steps=50, ema_decay=0.995, time_budget_minutes=29)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Train the average-velocity UNet with eq. (8.22) (resumable in run_dir); save its EMA weights and a card."""
    config = replace(TRAIN, **overrides)
    start_folder = folder_beside("mnist-flow", out_folder)
    flow = mnist_flow.load(folder=start_folder)
    model = UNet(replace(flow.config, interval_input=True, max_time_frequency=MAX_TIME_FREQUENCY))
    missing = model.load_state_dict(flow.state_dict(), strict=False).missing_keys
    assert all(key.startswith("interval_mlp.") for key in missing), missing  # only the new input starts fresh
    train_set = load_mnist("train")
    print(f"MeanFlow (eq. 8.22), guidance w = {MEANFLOW.guidance} trained in, from mnist-flow's weights")
    result = train_loop(model, meanflow_loss_fn(MEANFLOW), (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    card = model_card(NAME, config, result, {
        "meanflow": MEANFLOW.to_dict(), "parameters": count_parameters(ema),
        "initial_weights": {"name": "mnist-flow", "sha256": file_sha256(checkpoint_paths("mnist-flow", start_folder)[0])},
        "metrics": evaluate(ema, 1000) if result.finished and measure else {},
        "notes": "EMA weights. Predicts the average velocity u(z_t, r, t) of eq. (8.18) from (z_t, t * 1000, label) and "
                 f"interval_input (t - r) * 1000; guidance w = {MEANFLOW.guidance} built in (pass labels, no guidance). "
                 "1 call: z_1 - u(z_1, 0, 1); 2 calls: jumps 1 -> 0.5 -> 0 (8.19).",
    })
    save_checkpoint(ema, NAME, {"unet": model.config.to_dict(), "meanflow": MEANFLOW.to_dict()}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> UNet:
    """The average-velocity UNet (EMA weights, eval mode) on `device`."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device)


def sample(model: UNet, n: int, sampler: str = "meanflow", steps: int | None = None, *, labels: torch.Tensor | None = None,
           guidance: float = 1.0, **options) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1] in `steps` jumps (8.19) of one network call each (default 1)."""
    check_request(NAME, labels, guidance, MEANFLOW.guidance)
    return generate(model, n, sampler, steps or 1, labels=labels, **options)


def evaluate(model: UNet, n: int) -> dict:
    """FID, accuracy and time of n samples with 1 and 2 network calls."""
    return evaluate_by_steps(sample, model, n, (1, 2), "meanflow")


MODEL = NamedModel(
    name=NAME, chapter=8, summary="MeanFlow, no teacher: 1 or 2 calls", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, prediction="average-velocity", default_steps=1, evaluation_n=1000,
    headline={"FID (1 call)": ("steps_1", "fid"), "accuracy": ("steps_1", "accuracy"), "FID (2 calls)": ("steps_2", "fid")},
)
