"""mnist-fast: mnist-flow distilled to 4 Euler steps, guidance included (chapter 08).

Two rounds of progressive distillation (diffedu/distill.py): 8 steps learn from mnist-flow's 16
guided Euler steps, then 4 steps learn from those 8. Same UNet as mnist-flow, which it starts from.

    python -m diffedu train mnist-fast      (needs mnist-flow: the one beside it in --out, else the shipped one)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from diffedu.course.data import load_mnist
from diffedu.distill import distillation_loss_fn
from diffedu.models import count_parameters
from diffedu.models.checkpoints import (checkpoint_paths, file_sha256, folder_beside, model_card, read_checkpoint,
                                        save_checkpoint, stop_if_interrupted)
from diffedu.models.unet import UNet, unet_from_saved
from diffedu.train import TrainConfig, train as train_loop
from diffedu.zoo import NamedModel
from diffedu.zoo._built_in_guidance import check_request, evaluate_by_steps
from diffedu.zoo import mnist_flow

NAME = "mnist-fast"
TEACHER_STEPS = 16  # the first teacher: mnist-flow with this many guided Euler steps
ROUNDS = 2  # each halves the steps: 16 -> 8 -> 4
STUDENT_STEPS = TEACHER_STEPS // 2**ROUNDS
GUIDANCE = 1.25  # the teacher's classifier-free guidance, distilled into the student
TRAIN = TrainConfig(train_steps=1500, batch_size=64, lr=3e-4, warmup_steps=50, ema_decay=0.995, time_budget_minutes=14)


def train(run_dir: Path, out_folder: Path, measure: bool = True, **overrides) -> dict:
    """Distil mnist-flow in ROUNDS rounds (each resumable in run_dir/round-K); save the last student and a card."""
    config = replace(TRAIN, **overrides)
    teacher_folder = folder_beside("mnist-flow", out_folder)
    teacher = mnist_flow.load(folder=teacher_folder)
    train_set = load_mnist("train")
    rounds, steps, guidance = [], TEACHER_STEPS, GUIDANCE
    for k in range(1, ROUNDS + 1):
        steps //= 2
        print(f"round {k} of {ROUNDS}: a {steps}-step student learns from {2 * steps} teacher steps"
              + (f" (guidance w = {guidance})" if guidance != 1.0 else ""))
        student = UNet(teacher.config)
        student.load_state_dict(teacher.state_dict())  # the student starts as its teacher
        result = train_loop(student, distillation_loss_fn(teacher, steps, guidance),
                            (train_set.images, train_set.labels), config, Path(run_dir) / f"round-{k}")
        stop_if_interrupted(result)
        rounds.append({"student_steps": steps, "teacher_steps": 2 * steps, "teacher_guidance": guidance,
                       "train_steps": result.step, "finished": result.finished,
                       "wall_time_minutes": round(result.elapsed_seconds / 60, 2),
                       "images_per_second": round(result.images_per_second, 1)})
        if not result.finished:
            break
        teacher, guidance = result.ema.cpu().eval(), 1.0  # the next round learns from this student, guidance included
    student = result.ema.cpu().eval()
    result.elapsed_seconds = sum(r["wall_time_minutes"] for r in rounds) * 60
    finished = result.finished and len(rounds) == ROUNDS
    card = model_card(NAME, config, result, {
        "finished": finished, "rounds": rounds, "parameters": count_parameters(student),
        "teacher": {"name": "mnist-flow", "sha256": file_sha256(checkpoint_paths("mnist-flow", teacher_folder)[0]),
                    "steps": TEACHER_STEPS, "guidance": GUIDANCE},
        "metrics": evaluate(student, 1000) if finished and measure else {},
        "notes": f"EMA weights of the last student: samples with {STUDENT_STEPS} Euler steps, guidance w = {GUIDANCE} "
                 "built in (pass labels, no guidance). train_config is each round's.",
    })
    save_checkpoint(student, NAME, {"unet": teacher.config.to_dict(), "student_steps": STUDENT_STEPS,
                                    "distilled_guidance": GUIDANCE}, card, out_folder)
    return card


def load(device="cpu", folder: Path | None = None) -> UNet:
    """The distilled UNet (EMA weights, eval mode) on `device`."""
    state, config, _ = read_checkpoint(NAME, folder)
    return unet_from_saved(state, config["unet"], device)


def sample(model: UNet, n: int, sampler: str = "euler", steps: int | None = None, *, labels: torch.Tensor | None = None,
           guidance: float = 1.0, **options) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1] in `steps` Euler steps (default 4, the ones it was distilled for)."""
    check_request(NAME, labels, guidance, GUIDANCE)
    return mnist_flow.sample(model, n, sampler, steps or STUDENT_STEPS, labels=labels, **options)


def evaluate(model: UNet, n: int) -> dict:
    """FID, accuracy and time of n samples with 1, 2 and 4 Euler steps."""
    return evaluate_by_steps(sample, model, n, (1, 2, STUDENT_STEPS), "euler")


MODEL = NamedModel(
    name=NAME, chapter=8, summary=f"mnist-flow distilled to {STUDENT_STEPS} steps", train_config=TRAIN,
    train=train, load=load, sample=sample, evaluate=evaluate, prediction="velocity", only_samplers=("euler",), default_steps=STUDENT_STEPS,
    evaluation_n=1000,
    headline={f"FID ({STUDENT_STEPS} steps)": (f"steps_{STUDENT_STEPS}", "fid"), "accuracy": (f"steps_{STUDENT_STEPS}", "accuracy")},
)
