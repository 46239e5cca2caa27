"""A training loop that survives real life (chapter 03).

AdamW with linear warm-up and cosine decay, gradient clipping, an EMA of the weights,
mixed precision on GPUs, a progress bar with loss and images/s, a wall-clock budget, and a
checkpoint every few hundred steps holding everything needed to continue exactly where it
stopped: model, EMA, optimizer, learning-rate schedule, step, loss history and random state.
Stop it any way you like (Ctrl-C, a closed laptop, a killed process) and run the same call
again: it resumes from the last checkpoint.

    result = train(model, loss_fn, (images, labels), TrainConfig(train_steps=6000), run_dir="runs/unet")

`loss_fn(model, batch, generator) -> loss` says what to learn; `train` does the rest.

The same loop runs on one device or on many processes (GPUs, or nodes) through Hugging Face
Accelerate: `accelerate launch --multi_gpu -m diffedu train NAME` (or `torchrun`) starts one
process per device, and each step is then data-parallel. Every process draws the same global
batch of `batch_size` indices, takes its own shard, and computes its loss on it; after the
backward pass one all-reduce averages the gradients over all processes (diffedu.distributed),
so every process takes the same optimizer step and keeps identical weights and EMA. A shard can be split further into
`grad_accumulation_steps` micro-batches whose gradients add up before the step. Each shard's
noise comes from its own generator, seeded from the step and the shard's number, so a run with
P processes and A micro-batches each takes exactly the steps of one process with P x A
micro-batches (up to the order of floating-point additions). Only the first process shows the
progress bar and writes checkpoints; the checkpoint is the same file either way, so a run can
continue on another number of processes.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from diffedu.course.progress import tqdm

from diffedu.course.device import autocast_dtype, get_device, seeded_global_rng
from diffedu.distributed import MIXED_PRECISION, Distributed
from diffedu.models.checkpoints import CheckpointError

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Settings of one training run (the defaults suit the MNIST UNet on a CPU)."""

    train_steps: int = 6000  # optimizer steps in total (a resumed run counts from where it stopped)
    batch_size: int = 128  # images per optimizer step, over all processes and micro-batches together
    grad_accumulation_steps: int = 1  # micro-batches per process per step (their gradients add up)
    lr: float = 2e-3  # peak learning rate
    warmup_steps: int = 200  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm
    ema_decay: float = 0.999  # EMA of the weights, with warm-up (1 + step) / (10 + step)
    checkpoint_every: int = 250  # steps between checkpoints
    checkpoint_minutes: float = 1.0  # ... and at most this much training time between them (a kill loses at most this)
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
    processes: int = 1  # how many processes trained it together (this call)


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
    generator: torch.Generator  # the batches and the per-step seeds: the same on every process
    dist: Distributed
    step: int = 0
    losses: list[float] = field(default_factory=list)  # the mean over all processes, per step
    elapsed_seconds: float = 0.0  # training time of earlier calls
    pending_losses: list[torch.Tensor] = field(default_factory=list)  # losses of the last steps, not yet read from the device
    updating: bool = False  # inside a step's update (optimizer step, EMA, step count): see train_step

    def consistent(self) -> bool:
        """Whether the state is that of a whole number of steps (what a checkpoint may hold)."""
        return not self.updating and len(self.losses) + len(self.pending_losses) == self.step


def first_line(error: BaseException, limit: int = 100) -> str:
    """The first line of an error's message (or its type's name), at most `limit` characters: for one-line errors."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


CHECKPOINT_KEYS = ("model", "ema", "optimizer", "generator", "step", "losses", "elapsed_seconds")


def load_checkpoint(checkpoint_path: Path | None) -> dict | None:
    """The checkpoint in a run folder, or None if there is none. Loaded with weights_only=True:
    tensors and plain data (dicts, lists, numbers, strings) only, so a checkpoint.pt from someone
    else cannot run code. A damaged, foreign or malicious file raises CheckpointError (one line)."""
    if checkpoint_path is None or not checkpoint_path.exists():
        return None
    what_to_do = f"delete {checkpoint_path} (or choose another run folder) to start afresh"
    if not checkpoint_path.is_file():
        raise CheckpointError(f"{checkpoint_path} is not a file: {what_to_do}")
    try:
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)  # load_state_dict moves it to the device
    except pickle.UnpicklingError:
        raise CheckpointError(f"{checkpoint_path} holds more than tensors and plain data, so it was not loaded "
                              f"(it could run code): {what_to_do}") from None
    except Exception as error:  # truncated, not a checkpoint at all, unreadable
        raise CheckpointError(f"{checkpoint_path} cannot be read ({first_line(error, 120)}): {what_to_do}") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(saved, dict) or key not in saved]
    if missing:
        raise CheckpointError(f"{checkpoint_path} is not a diffedu training checkpoint (no {', '.join(missing)}): {what_to_do}")
    if not (isinstance(saved["step"], int) and saved["step"] >= 0 and isinstance(saved["losses"], list)
            and len(saved["losses"]) == saved["step"] and isinstance(saved["generator"], torch.Tensor)):
        raise CheckpointError(f"{checkpoint_path} is inconsistent (step {saved['step']!r}, "
                              f"{len(saved['losses']) if isinstance(saved['losses'], list) else '?'} losses): {what_to_do}")
    return saved


def load_weights(module: nn.Module, weights: dict, checkpoint_path: Path, which: str) -> None:
    """module.load_state_dict(weights), with a one-line CheckpointError when the checkpoint was
    saved from another network (another model's run folder)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"the {which} in {checkpoint_path} does not fit this network, so that run folder "
                              f"belongs to another model ({first_line(error)}): choose another run folder, or delete it "
                              "to start afresh") from None


def restore(state: TrainingState, saved: dict | None, checkpoint_path: Path | None) -> None:
    """Load a checkpoint's optimizer, random state, step and losses into `state` (`train` loads the
    weights before it builds the optimizer); a run saved by any number of processes."""
    if saved is None:
        return
    try:
        state.optimizer.load_state_dict(saved["optimizer"])
        scaler = state.dist.accelerator.scaler
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        state.generator.set_state(saved["generator"])
    except (ValueError, RuntimeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{checkpoint_path} does not fit this training run ({first_line(error)}): choose another "
                              "run folder, or delete it to start afresh") from None
    state.step, state.losses, state.elapsed_seconds = saved["step"], saved["losses"], saved["elapsed_seconds"]
    if state.dist.is_main:
        print(f"resuming from {checkpoint_path} at step {state.step} ({state.elapsed_seconds / 60:.1f} min trained so far)")


def save(state: TrainingState, checkpoint_path: Path | None, config: TrainConfig, elapsed_seconds: float,
         alone: bool = False) -> None:
    """Write `state` to checkpoint_path (atomically, by the first process only); nothing if there
    is no run folder. The other processes wait until it is written. alone=True: this process writes
    it without waiting for the others (they are gone: see `train`)."""
    if checkpoint_path is None:
        return
    if state.dist.is_main or alone:
        scaler = state.dist.accelerator.scaler
        _save_atomically({
            "model": state.model.state_dict(),
            "ema": state.ema.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "generator": state.generator.get_state(),
            "step": state.step,
            "losses": state.losses,
            "elapsed_seconds": elapsed_seconds,
            "config": config.to_dict(),
            "processes": state.dist.world_size,
        }, checkpoint_path)
    if not alone:
        state.dist.wait_for_everyone()


def train_step(state: TrainingState, loss_fn: Callable, data: list[torch.Tensor], config: TrainConfig) -> torch.Tensor:
    """One optimizer step: draw the global batch, compute the loss on this process's shard (in
    micro-batches), backward, average the gradients over all processes, clip, AdamW with the
    learning rate of this step, then the EMA. Appends this process's mean loss, still on the
    device, to state.pending_losses (reading it would wait for a GPU: `train` reads the losses
    every LOG_EVERY steps).

    Until the optimizer step nothing but the generator and the gradients has changed, so a step
    stopped there can be redone; from the optimizer step to `state.step += 1` (state.updating) the
    step must finish as a whole, and a second Ctrl-C waits for it (StopRequest)."""
    dist, accumulation = state.dist, config.grad_accumulation_steps
    micro = config.batch_size // (dist.world_size * accumulation)  # images per micro-batch
    index = torch.randint(0, data[0].shape[0], (config.batch_size,), generator=state.generator)  # the global batch
    step_seed = int(torch.randint(0, 2**62, (1,), generator=state.generator))
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    total = torch.zeros((), device=dist.device)
    for k in range(accumulation):
        shard = dist.rank * accumulation + k  # its place in the global batch
        rows = index[shard * micro:(shard + 1) * micro].to(dist.device)
        generator = torch.Generator().manual_seed(step_seed + shard)  # this shard's noise, whoever computes it
        with dist.autocast(), seeded_global_rng(step_seed + shard, dist.device):  # dropout's masks too
            loss = loss_fn(state.model, [d[rows] for d in data], generator)
        dist.backward(loss / accumulation)  # the micro-batches' gradients add up
        total += loss.detach().float()
    dist.average_gradients(state.model)  # the all-reduce: the gradient of the whole global batch, on every process
    dist.clip_grad_norm_(state.model.parameters(), config.grad_clip)
    state.updating = True
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    update_ema(state.ema, state.model, state.step, config.ema_decay)
    state.step += 1
    state.pending_losses.append(total / accumulation)
    state.updating = False


LOG_EVERY = 10  # steps between reading the losses (checked for NaN/inf) and updating the bar


def record_losses(state: TrainingState, config: TrainConfig) -> None:
    """Move the losses of the last steps, averaged over the processes, into state.losses; stop on
    the first NaN/inf (every process sees the same numbers, so all stop together)."""
    pending = state.pending_losses
    values = state.dist.mean(torch.stack(pending)).float().tolist() if pending else []
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            step = state.step - len(values) + offset
            raise FloatingPointError(f"loss became {value} at step {step}: lower the learning rate (now {config.lr})")
    state.losses.extend(values)
    pending.clear()


def undo_step(state: TrainingState, rng_state: torch.Tensor, step_started: int) -> None:
    """After a step was stopped before its update (nothing but the generator and the gradients
    changed): put them back, so that the step is redone exactly on resume."""
    if state.step == step_started and not state.updating:
        state.generator.set_state(rng_state)
        state.optimizer.zero_grad(set_to_none=True)


class StopRequest:
    """Ctrl-C (SIGINT) or a launcher's SIGTERM, as a flag instead of an exception: the step under way
    finishes, then training saves and returns, at the same step on every process (Distributed.any).
    Pressed a second time, Ctrl-C stops at once (KeyboardInterrupt), except inside a step's update,
    which always finishes first. Active in the main thread only (where Python delivers signals)."""

    def __init__(self, state: TrainingState):
        self.state = state
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT and not self.state.updating:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def check_config(config: TrainConfig, processes: int) -> None:
    if config.train_steps < 1 or config.batch_size < 1 or config.grad_accumulation_steps < 1:
        raise ValueError(f"train_steps, batch_size and grad_accumulation_steps must be positive, got "
                         f"{config.train_steps}, {config.batch_size} and {config.grad_accumulation_steps}")
    if config.time_budget_minutes is not None and not config.time_budget_minutes > 0:
        raise ValueError(f"time_budget_minutes must be positive (or None for no budget), got {config.time_budget_minutes}")
    shards = processes * config.grad_accumulation_steps
    if config.batch_size % shards:
        raise ValueError(f"batch_size {config.batch_size} does not split into {processes} processes x "
                         f"{config.grad_accumulation_steps} micro-batches: choose a multiple of {shards}")


def start_run(model: nn.Module, data: Sequence[torch.Tensor], config: TrainConfig, run_dir: str | Path | None,
              device: torch.device | str | None) -> tuple[TrainingState, list[torch.Tensor], Path | None]:
    """Everything `train` needs before its first step: the device(s), the data on it, the EMA copy, AdamW,
    and the state of the last checkpoint in run_dir, if there is one."""
    if len(data) == 0 or any(d.shape[0] != data[0].shape[0] for d in data):
        raise ValueError(f"data must be tensors with the same first dimension, got {[tuple(d.shape) for d in data]}")
    device = torch.device(device) if device is not None else get_device()
    dist = Distributed(device, MIXED_PRECISION[autocast_dtype(device, allow_cpu_bf16=config.allow_cpu_bf16)])
    check_config(config, dist.world_size)
    data = [d.to(dist.device) for d in data]
    checkpoint_path = Path(run_dir) / CHECKPOINT_FILE if run_dir is not None else None
    saved = load_checkpoint(checkpoint_path)
    model.to(dist.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if saved is not None:
        load_weights(model, saved["model"], checkpoint_path, "model")
        load_weights(ema, saved["ema"], checkpoint_path, "EMA")
    model.train()
    optimizer = dist.prepare(torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay))
    state = TrainingState(model=model, ema=ema, optimizer=optimizer, dist=dist,
                          generator=torch.Generator().manual_seed(config.seed))
    restore(state, saved, checkpoint_path)
    return state, data, checkpoint_path


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, list[torch.Tensor], torch.Generator], torch.Tensor],
    data: Sequence[torch.Tensor],
    config: TrainConfig,
    run_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on random batches of `data`, resuming from run_dir's checkpoint if any, in
    this process or in all the processes a launcher started (see the module's docstring).

    Args:
        model: the network (moved to `device`).
        loss_fn: loss_fn(model, batch, generator) -> scalar loss; batch is the list of
            tensors in `data` indexed by one random (micro-)batch, on `device`; draw all
            randomness from `generator` (a CPU generator) so runs are reproducible and resumable.
        data: tensors with the same first dimension, e.g. (images, labels).
        config: a TrainConfig.
        run_dir: where checkpoints go; None trains without checkpoints.
        device: default `get_device()` (with a launcher: each process's own device).
    Returns:
        a TrainResult. A Ctrl-C saves a checkpoint and returns (finished=False).
    """
    state, data, checkpoint_path = start_run(model, data, config, run_dir, device)
    with Supervisor(state, config, checkpoint_path, progress) as run:
        while run.keep_going():
            train_step(state, loss_fn, data, config)  # a batch, its loss, backward, AdamW, EMA
            run.after_step()
    return run.finish()


class Supervisor:
    """What wraps the training loop without being part of it: the clock and the time budget, the
    progress bar, Ctrl-C and SIGTERM as a flag (StopRequest), checkpoints by step and by the clock,
    what to do when the loop is stopped half-way, and the final save. Every decision to stop is
    taken on numbers all processes share (Distributed.any), so all stop at the same step."""

    def __init__(self, state: TrainingState, config: TrainConfig, checkpoint_path: Path | None, progress: bool):
        self.state, self.config, self.checkpoint_path = state, config, checkpoint_path
        self.start_step, self.elapsed_before = state.step, state.elapsed_seconds
        self.result = TrainResult(model=state.model, ema=state.ema, step=state.step, losses=state.losses,
                                  resumed_from=state.step, processes=state.dist.world_size)
        self.budget = config.time_budget_minutes * 60 if config.time_budget_minutes is not None else math.inf
        self.t_start = self.last_save = time.perf_counter()  # the budget is per call: a resumed run gets a new one
        self.step_rng_state, self.step_started = state.generator.get_state(), state.step  # to redo a stopped step
        self.alone = False  # True: the other processes are gone, this one saves by itself
        self.stop = StopRequest(state)
        self.bar = tqdm(total=config.train_steps, initial=state.step, desc="training",
                        disable=not (progress and state.dist.is_main), dynamic_ncols=True)

    def __enter__(self) -> Supervisor:
        return self

    def keep_going(self) -> bool:
        """False once all steps are done, the budget is spent or a stop was asked for (with a message)."""
        state, dist = self.state, self.state.dist
        if state.step >= self.config.train_steps:
            return False
        over_budget = time.perf_counter() - self.t_start >= self.budget
        if dist.any(over_budget or self.stop.requested):
            if dist.any(self.stop.requested):
                self.result.interrupted = True
                if dist.is_main:
                    print(f"interrupted at step {state.step}: saving a checkpoint; run the same command again to "
                          "continue", file=sys.stderr)
            elif dist.is_main:
                print(f"time budget of {self.config.time_budget_minutes} min for this run reached at step {state.step} of "
                      f"{self.config.train_steps}: saving a checkpoint; run the same command again to continue")
            return False
        self.step_rng_state, self.step_started = state.generator.get_state(), state.step
        return True

    def after_step(self) -> None:
        """The bar and the losses every LOG_EVERY steps; a checkpoint every checkpoint_every steps and by the clock."""
        state, config = self.state, self.config
        self.bar.update(1)
        if state.step % LOG_EVERY == 0 or state.step == config.train_steps:
            record_losses(state, config)
            recent = state.losses[-50:]
            seconds = time.perf_counter() - self.t_start
            self.bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}",
                                 img_s=f"{(state.step - self.start_step) * config.batch_size / seconds:.0f}")
        due = state.step % config.checkpoint_every == 0
        if not due and state.step % LOG_EVERY == 0:  # and by the clock, so that a kill loses little
            due = state.dist.any(time.perf_counter() - self.last_save >= config.checkpoint_minutes * 60)
        if due and state.step < config.train_steps:
            record_losses(state, config)
            save(state, self.checkpoint_path, config, self.elapsed_before + time.perf_counter() - self.t_start)
            self.last_save = time.perf_counter()

    def __exit__(self, kind, error, traceback) -> bool:
        """A second Ctrl-C (or one raised by a step's code), or a process group broken by a dead process:
        undo the unfinished step and keep going to the final save. Anything else propagates."""
        state, dist = self.state, self.state.dist
        handled = False
        try:
            if kind is not None and issubclass(kind, KeyboardInterrupt):
                handled = self.result.interrupted = True
                undo_step(state, self.step_rng_state, self.step_started)
                if state.consistent():
                    message = f"interrupted at step {state.step}: saving a checkpoint; run the same command again to continue"
                else:  # stopped inside a step's update, which can be neither finished nor undone
                    self.checkpoint_path = None
                    message = "interrupted inside a step's update: the last checkpoint is kept; run the same command again"
                if dist.is_main:
                    print(message, file=sys.stderr)
            elif kind is not None and issubclass(kind, RuntimeError) and dist.world_size > 1 and state.consistent():
                handled = self.result.interrupted = self.alone = True  # another process died: its all-reduce failed
                undo_step(state, self.step_rng_state, self.step_started)
                state.losses.extend(torch.stack(state.pending_losses).float().tolist() if state.pending_losses else [])
                state.pending_losses.clear()  # (this process's own losses: the others' cannot be had)
                print(f"another process of this run stopped (its connection closed: {type(error).__name__}): saving step "
                      f"{state.step} from process {dist.rank}; run the same command again to continue", file=sys.stderr)
        finally:
            self.bar.close()
            self.stop.restore()
        return handled

    def finish(self) -> TrainResult:
        """Save the last checkpoint and say what this call did."""
        state = self.state
        if not self.alone:
            record_losses(state, self.config)
        seconds = time.perf_counter() - self.t_start
        save(state, self.checkpoint_path, self.config, self.elapsed_before + seconds, alone=self.alone)
        result = self.result
        result.step, result.elapsed_seconds = state.step, self.elapsed_before + seconds
        result.images_per_second = (state.step - self.start_step) * self.config.batch_size / max(seconds, 1e-9)
        result.finished = state.step >= self.config.train_steps
        state.model.eval()
        return result
