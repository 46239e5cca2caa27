"""Which CPU settings train the chapter-03 UNet fastest here? (not part of the test suite)

Measures training throughput (images/s, full AdamW steps on MNIST batches) for each thread
count, with and without channels_last memory format and torch.compile. Run it on a quiet
machine: another busy process changes the answer (two threads fighting for two busy cores
can be several times slower than one).

    python benchmarks/bench_cpu_settings.py
"""

from __future__ import annotations

import itertools
import os
import time

import torch

from diffedu.course.data import load_mnist
from diffedu.losses import diffusion_loss_fn
from diffedu.zoo.mnist_unet import DIFFUSION as MNIST_UNET_DIFFUSION, TRAIN as MNIST_UNET_TRAIN, build
from diffedu.schedules import make_schedule


def throughput(threads: int, channels_last: bool, compiled: bool, steps: int = 15) -> float:
    torch.set_num_threads(threads)
    model = build()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    loss_fn = diffusion_loss_fn(make_schedule(MNIST_UNET_DIFFUSION.schedule), MNIST_UNET_DIFFUSION)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = load_mnist("train", subset=2048)
    generator = torch.Generator().manual_seed(0)
    batch_size = MNIST_UNET_TRAIN.batch_size
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        index = torch.randint(0, len(data), (batch_size,), generator=generator)
        images = data.images[index]
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(forward, [images, data.labels[index]], generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    print(f"{os.cpu_count()} CPUs; batch size {MNIST_UNET_TRAIN.batch_size}")
    print(f"{'threads':>7} {'channels_last':>13} {'compile':>7} {'images/s':>9}")
    for threads, channels_last, compiled in itertools.product(range(1, (os.cpu_count() or 1) + 1), (False, True), (False, True)):
        try:
            value = f"{throughput(threads, channels_last, compiled):9.0f}"
        except Exception as error:  # torch.compile needs a C++ compiler; report, do not stop
            value = f"failed: {type(error).__name__}"
        print(f"{threads:>7} {str(channels_last):>13} {str(compiled):>7} {value}", flush=True)


if __name__ == "__main__":
    main()
