"""mnist-consistency: a consistency model distilled from mnist-flow (chapter 08, section 7): a digit in one
network call, or two for sharper ones (multistep sampling, eq. 8.17).

Consistency distillation (diffedu/consistency.py, eq. 8.15): the student maps both ends of one guided
Euler step of mnist-flow (w = 1.25) on a 16-step grid to the same x_0. Same UNet as mnist-flow, which it
starts from; with c_skip = 1 and c_out = -t (8.14) the copy is already the x_0-estimate (8.7) of the flow.

    python -m diffedu train mnist-consistency    (needs mnist-flow: the one beside it in --out, else the shipped one)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.consistency import consistency_distillation_loss_fn
from diffedu.course.data import load_mnist
from diffedu.generate import generate
from diffedu.models import count_parameters
from diffedu.models.checkpoints import (checkpoint_paths, file_sha256, folder_beside, model_card, read_checkpoint,
                                        save_checkpoint, stop_if_interrupted)
from diffedu.models.unet import UNet, unet_from_saved
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel
from diffedu.zoo._built_in_guidance import check_request, evaluate_by_steps
from diffedu.zoo import mnist_flow

NAME = "mnist-consistency"
TEACHER_STEPS = 16  # the grid of the teacher's Euler steps, t_i = i / 16
GUIDANCE = 1.25  # the teacher's classifier-free guidance, mnist-flow's recommended w: distilled into the student
HUBER_C = 0.03  # c of the pseudo-Huber distance (8.16)
TRAIN = TrainConfig(train_steps=7000, batch_size=64, lr=2e-4, warmup_steps=50, ema_decay=0.995, time_budget_minutes=29)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Distil mnist-flow into a consistency model (resumable in run_dir); save its EMA weights and a card."""
    config = replace(TRAIN, **overrides)
    teacher_folder = folder_beside("mnist-flow", out_folder)
    teacher = mnist_flow.load(folder=teacher_folder)
    train_set = load_mnist("train")
    student = UNet(teacher.config)
    student.load_state_dict(teacher.state_dict())  # the student starts as its teacher
    print(f"consistency distillation (eq. 8.15) from mnist-flow's guided Euler steps (w = {GUIDANCE}, {TEACHER_STEPS}-step grid)")
    result = train_loop(student, consistency_distillation_loss_fn(teacher, TEACHER_STEPS, GUIDANCE, HUBER_C),
                        (train_set.images, train_set.labels), config, run_dir)
    stop_if_interrupted(result)
    ema = result.ema.cpu().eval()
    card = model_card(NAME, config, result, {
        "parameters": count_parameters(ema),
        "teacher": {"name": "mnist-flow", "sha256": file_sha256(checkpoint_paths("mnist-flow", teacher_folder)[0]),
                    "grid_steps": TEACHER_STEPS, "guidance": GUIDANCE},
        "distance": {"kind": "pseudo-Huber", "c": HUBER_C}, "target": "current weights, gradient stopped (mu = 0)",
        "metrics": evaluate(ema, 1000) if result.finished and measure else {},
        "notes": f"EMA weights. f(x_t, t) = x_t - t F(x_t, t * 1000, label), eq. (8.14); guidance w = {GUIDANCE} built in "
                 "(pass labels, no guidance). 1 call: f(noise, 1); 2 calls: eq. (8.17) at t = 1 and 0.5.",
    })
    save_checkpoint(ema, NAME, {"unet": teacher.config.to_dict(), "teacher_grid_steps": TEACHER_STEPS,
                                "distilled_guidance": GUIDANCE}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> UNet:
    """The consistency model's network F (EMA weights, eval mode) on `device`."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device)


def sample(model: UNet, n: int, sampler: str = "consistency", steps: int | None = None, *, labels: torch.Tensor | None = None,
           guidance: float = 1.0, **options) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1] in `steps` network calls (default 1), eq. (8.17)."""
    check_request(NAME, labels, guidance, GUIDANCE)
    return generate(model, n, sampler, steps or 1, labels=labels, **options)


def evaluate(model: UNet, n: int) -> dict:
    """FID, accuracy and time of n samples with 1 and 2 network calls."""
    return evaluate_by_steps(sample, model, n, (1, 2), "consistency")


MODEL = NamedModel(
    name=NAME, chapter=8, summary="consistency model distilled from mnist-flow: 1 or 2 calls", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, prediction="consistency", default_steps=1, evaluation_n=1000,
    headline={"FID (1 call)": ("steps_1", "fid"), "accuracy": ("steps_1", "accuracy"), "FID (2 calls)": ("steps_2", "fid")},
)
