"""One process or many (chapter 03, "Training on several GPUs"): the little the training loop
needs to know about the processes it runs in, through Hugging Face Accelerate.

    python -m diffedu train mnist-unet                                                one process
    accelerate launch --multi_gpu --num_processes 4 -m diffedu train mnist-unet       4 GPUs of one machine
    torchrun --nproc_per_node 8 --nnodes 2 ... -m diffedu train mnist-unet            2 nodes of 8 GPUs

On a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2` starts two processes
that join over gloo (`--cpu --num_processes 2` starts only one unless MPI is installed).

A launcher starts the same program once per device and tells each copy its rank (0, 1, ...)
and the world size through environment variables; `accelerate.Accelerator` reads them and joins
the processes into one group (NCCL between GPUs, gloo between CPUs). After each backward pass,
`average_gradients` replaces every process's gradients by their mean over all processes with one
all-reduce: data parallelism, as PyTorch's DistributedDataParallel does it. (DDP also overlaps the
all-reduce with the backward pass, bucket by bucket; doing it afterwards in one call costs a little
speed and keeps the model unwrapped, so loss functions can call its methods, such as a VAE's
encode and decode.) Without a launcher there is one process, and all of this does nothing.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

MIXED_PRECISION = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "no"}


def is_main_process() -> bool:
    """Whether this is the first (or the only) process of a launch: launchers set RANK (0, 1, ...)
    for every process they start. Only the first one writes models, cards and messages."""
    return int(os.environ.get("RANK", "0")) == 0


class Distributed:
    """The processes of one training run, as Accelerate sees them. `device` is this process's;
    `mixed_precision` is "bf16", "fp16" or "no" (the autocast of diffedu.course.device)."""

    def __init__(self, device: torch.device, mixed_precision: str = "no"):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # one process: Accelerate would keep the precision of the
            AcceleratorState._reset_state()  # first run in this Python session and refuse any other
        self.accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=mixed_precision)
        self.device = self.accelerator.device if self.accelerator.num_processes > 1 else device
        if self.device.type == "cpu":
            self.device = torch.device("cpu")  # not "cpu:0": a checkpoint must not name a process's CPU
        self.rank = self.accelerator.process_index
        self.world_size = self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process

    def prepare(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimizer wrapped for mixed precision (loss scaling in float16); unchanged otherwise."""
        return self.accelerator.prepare(optimizer)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), with the loss scaled first in float16."""
        self.accelerator.backward(loss)

    @torch.no_grad()
    def average_gradients(self, model: nn.Module) -> None:
        """Every process's gradients <- their mean over all processes: one all-reduce of all of them,
        flattened into one tensor. A parameter without a gradient here counts as zero, so that every
        process sends tensors of the same size."""
        if self.world_size == 1:
            return
        import torch.distributed

        parameters = [p for p in model.parameters() if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in parameters])
        torch.distributed.all_reduce(flat)  # the sum over processes, on every process
        flat /= self.world_size
        offset = 0
        for p in parameters:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def clip_grad_norm_(self, parameters, max_norm: float) -> None:
        self.accelerator.clip_grad_norm_(parameters, max_norm)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `values` over all processes (every process gets it)."""
        return self.accelerator.reduce(values, "mean") if self.world_size > 1 else values

    def any(self, flag: bool) -> bool:
        """True on every process if `flag` is True on any: how all processes agree to stop at the same step."""
        if self.world_size == 1:
            return flag
        return bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.device), "sum").item() > 0)

    def wait_for_everyone(self) -> None:
        self.accelerator.wait_for_everyone()
