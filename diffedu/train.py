"""A training loop that survives real life (chapter 03).

AdamW with linear warm-up and cosine decay, gradient clipping, an EMA of the weights,
mixed precision on GPUs, a progress bar with loss and images/s, a wall-clock budget, and a
checkpoint every few hundred steps holding everything needed to continue exactly where it
stopped: model, EMA, optimizer, learning-rate schedule, step, loss history and random state.
Stop it any way you like (Ctrl-C, a closed laptop, a killed process) and run the same call
again: it resumes from the last checkpoint.

    result = train(model, loss_fn, (images, labels), TrainConfig(train_steps=6000), run_dir="runs/unet")

`loss_fn(model, batch, generator) -> loss` says what to learn; `train` does the rest.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from diffedu.course.progress import tqdm

from diffedu.course.device import autocast_dtype, get_device

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Settings of one training run (the defaults suit the MNIST UNet on a CPU)."""

    train_steps: int = 6000  # optimizer steps in total (a resumed run counts from where it stopped)
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate
    warmup_steps: int = 200  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.999  # EMA of the weights, with warm-up (1 + step) / (10 + step)
    checkpoint_every: int = 250  # steps between checkpoints
    time_budget_minutes: float | None = None  # stop (and save) after this much training time in one call
    seed: int = 0
    allow_cpu_bf16: bool = False  # bfloat16 autocast on CPUs with native support

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a call to `train` did. `model` holds the live weights, `ema` the averaged ones."""

    model: nn.Module
    ema: nn.Module
    step: int
    losses: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0  # training time over all runs, resumed ones included
    images_per_second: float = 0.0  # in this call
    finished: bool = False  # reached config.train_steps (False: budget, interrupt)
    interrupted: bool = False  # stopped by Ctrl-C (a checkpoint was saved)
    resumed_from: int = 0  # the step this call started at


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate at `step`: linear warm-up, then cosine decay to lr * min_lr_ratio."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.train_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, step: int, decay: float) -> None:
    """ema <- d * ema + (1 - d) * model, with d = min(decay, (1 + step) / (10 + step)) so that
    the average is not dominated by the random initial weights early on."""
    d = min(decay, (1 + step) / (10 + step))
    for ema_p, p in zip(ema.parameters(), model.parameters()):
        ema_p.lerp_(p.detach(), 1 - d)
    for ema_b, b in zip(ema.buffers(), model.buffers()):
        ema_b.copy_(b)


def _save_atomically(state: dict, path: Path) -> None:
    """Write to a temporary file, then rename: a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@dataclass
class TrainingState:
    """Everything a checkpoint holds: what `train` needs to continue exactly where it stopped."""

    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # all randomness of batches and losses
    step: int = 0
    losses: list[float] = field(default_factory=list)
    elapsed_seconds: float = 0.0  # training time of earlier calls


def restore(state: TrainingState, checkpoint_path: Path | None, device: torch.device) -> None:
    """Load the checkpoint at checkpoint_path into `state`, if there is one."""
    if checkpoint_path is None or not checkpoint_path.exists():
        return
    saved = torch.load(checkpoint_path, map_location=device, weights_only=False)
    state.model.load_state_dict(saved["model"])
    state.ema.load_state_dict(saved["ema"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scaler.load_state_dict(saved["scaler"])
    state.generator.set_state(saved["generator"])
    state.step, state.losses, state.elapsed_seconds = saved["step"], saved["losses"], saved["elapsed_seconds"]
    print(f"resuming from {checkpoint_path} at step {state.step} ({state.elapsed_seconds / 60:.1f} min trained so far)")


def save(state: TrainingState, checkpoint_path: Path | None, config: TrainConfig, elapsed_seconds: float) -> None:
    """Write `state` to checkpoint_path (atomically); nothing if there is no run folder."""
    if checkpoint_path is None:
        return
    _save_atomically({
        "model": state.model.state_dict(),
        "ema": state.ema.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scaler": state.scaler.state_dict(),
        "generator": state.generator.get_state(),
        "step": state.step,
        "losses": state.losses,
        "elapsed_seconds": elapsed_seconds,
        "config": config.to_dict(),
    }, checkpoint_path)


def train_step(state: TrainingState, loss_fn: Callable, data: list[torch.Tensor], config: TrainConfig,
               amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One optimizer step on a random batch: the loss, backward, clipped gradients, AdamW with the
    learning rate of this step, then the EMA. Returns the loss, still on the device (reading it
    would wait for a GPU: `train` reads the losses every LOG_EVERY steps)."""
    device = data[0].device
    index = torch.randint(0, data[0].shape[0], (config.batch_size,), generator=state.generator).to(device)
    batch = [d[index] for d in data]
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loss = loss_fn(state.model, batch, state.generator)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.unscale_(state.optimizer)
    nn.utils.clip_grad_norm_(state.model.parameters(), config.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    update_ema(state.ema, state.model, state.step, config.ema_decay)
    state.step += 1
    return loss.detach()


LOG_EVERY = 10  # steps between reading the losses (checked for NaN/inf) and updating the bar


def record_losses(state: TrainingState, pending: list[torch.Tensor], config: TrainConfig) -> None:
    """Move the losses of the last steps into state.losses; stop on the first NaN/inf."""
    values = torch.stack(pending).float().tolist() if pending else []
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            step = state.step - len(values) + offset
            raise FloatingPointError(f"loss became {value} at step {step}: lower the learning rate (now {config.lr})")
    state.losses.extend(values)
    pending.clear()


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, list[torch.Tensor], torch.Generator], torch.Tensor],
    data: Sequence[torch.Tensor],
    config: TrainConfig,
    run_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on random batches of `data`, resuming from run_dir's checkpoint if any.

    Args:
        model: the network (moved to `device`).
        loss_fn: loss_fn(model, batch, generator) -> scalar loss; batch is the list of
            tensors in `data` indexed by one random batch, on `device`; draw all randomness
            from `generator` (a CPU generator) so runs are reproducible and resumable.
        data: tensors with the same first dimension, e.g. (images, labels).
        config: a TrainConfig.
        run_dir: where checkpoints go; None trains without checkpoints.
        device: default `get_device()`.
    Returns:
        a TrainResult. A Ctrl-C saves a checkpoint and returns (finished=False).
    """
    if len(data) == 0 or any(d.shape[0] != data[0].shape[0] for d in data):
        raise ValueError(f"data must be tensors with the same first dimension, got {[tuple(d.shape) for d in data]}")
    if config.train_steps < 1 or config.batch_size < 1:
        raise ValueError(f"train_steps and batch_size must be positive, got {config.train_steps} and {config.batch_size}")
    if config.time_budget_minutes is not None and not config.time_budget_minutes > 0:
        raise ValueError(f"time_budget_minutes must be positive (or None for no budget), got {config.time_budget_minutes}")
    device = torch.device(device) if device is not None else get_device()
    data = [d.to(device) for d in data]
    model.to(device).train()
    amp_dtype = autocast_dtype(device, allow_cpu_bf16=config.allow_cpu_bf16)
    state = TrainingState(
        model=model,
        ema=copy.deepcopy(model).eval().requires_grad_(False),
        optimizer=torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        generator=torch.Generator().manual_seed(config.seed),
    )
    checkpoint_path = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    restore(state, checkpoint_path, device)
    start_step, elapsed_before = state.step, state.elapsed_seconds

    result = TrainResult(model=model, ema=state.ema, step=start_step, losses=state.losses, resumed_from=start_step)
    budget = config.time_budget_minutes * 60 if config.time_budget_minutes is not None else math.inf
    t_start = time.perf_counter()
    pending: list[torch.Tensor] = []  # losses not yet read from the device
    step_rng_state = state.generator.get_state()
    bar = tqdm(total=config.train_steps, initial=start_step, desc="training", disable=not progress, dynamic_ncols=True)
    try:
        while state.step < config.train_steps:
            if time.perf_counter() - t_start >= budget:  # the budget is per call: a resumed run gets a new one
                print(f"time budget of {config.time_budget_minutes} min for this run reached at step {state.step} of "
                      f"{config.train_steps}: saving a checkpoint; run the same command again to continue")
                break
            step_rng_state = state.generator.get_state()  # to redo this step exactly after a Ctrl-C
            pending.append(train_step(state, loss_fn, data, config, amp_dtype))
            bar.update(1)
            if state.step % LOG_EVERY == 0 or state.step == config.train_steps:
                record_losses(state, pending, config)
                recent = state.losses[-50:]
                seconds = time.perf_counter() - t_start
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}",
                                img_s=f"{(state.step - start_step) * config.batch_size / seconds:.0f}")
            if state.step % config.checkpoint_every == 0:
                record_losses(state, pending, config)
                save(state, checkpoint_path, config, elapsed_before + time.perf_counter() - t_start)
    except KeyboardInterrupt:
        result.interrupted = True
        state.generator.set_state(step_rng_state)  # the unfinished step will be redone on resume
        print(f"interrupted at step {state.step}: saving a checkpoint; run the same command again to continue")
    finally:
        bar.close()
    record_losses(state, pending, config)
    seconds = time.perf_counter() - t_start
    save(state, checkpoint_path, config, elapsed_before + seconds)
    result.step, result.elapsed_seconds = state.step, elapsed_before + seconds
    result.images_per_second = (state.step - start_step) * config.batch_size / max(seconds, 1e-9)
    result.finished = state.step >= config.train_steps
    model.eval()
    return result
