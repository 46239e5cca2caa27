"""Dynamic batching: run the requests that arrive close together as one batch (chapter 11).

A network call on a batch of b images costs about t(b) = t_0 + b t_1 (eq. (11.3)): a fixed part
t_0 (Python, launching kernels, reading the weights) and a part per image. One request at a
time pays t_0 for every image; requests gathered into batches pay it once per batch. Inference
servers (NVIDIA Triton, TorchServe, Ray Serve) all do this; here it is in one small class.

The batcher waits for a first request, then gathers more for at most `max_wait_ms` or until
`max_batch` images are together, and runs them in one call. While one batch runs, the next
requests queue up, and the next batch takes them all at once: under load, the batch grows by
itself.

Where the call runs is a trade-off. On the event loop's own thread (the default) the server reads
no new requests while a batch runs (they wait in the socket's queue, a tenth of a second at
most here, and form the next batch). In a worker thread (run_in_thread=True) it stays responsive,
but PyTorch ran the same batch markedly slower outside the main thread in the course's
measurements (benchmarks/bench_deployment.py measures both), so the default keeps it on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchStats:
    """What the batcher has done: requests answered, model calls made, images drawn."""

    requests: int = 0
    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    sizes: list[int] = field(default_factory=list, repr=False)  # images per batch, the last 1,000

    def record(self, requests: int, images: int) -> None:
        self.requests += requests
        self.batches += 1
        self.images += images
        self.largest_batch = max(self.largest_batch, images)
        self.sizes = (self.sizes + [images])[-1000:]

    def to_dict(self) -> dict:
        return {"requests": self.requests, "batches": self.batches, "images": self.images,
                "largest_batch": self.largest_batch,
                "mean_batch": round(self.images / self.batches, 2) if self.batches else 0.0}


class DynamicBatcher:
    """Gathers requests into batches and runs each batch with `run_batch` in a worker thread.

    Args:
        run_batch: list of requests -> list of results, one each, in order (runs in a thread).
        size_of: how many images a request asks for (default: 1 each).
        max_batch: the most images in one batch (a request larger than this runs alone).
        max_wait_ms: how long the first request of a batch waits for others; 0 takes only what is
            already queued.
        enabled: False runs every request alone, one after the other (the baseline).
        run_in_thread: run each batch in a worker thread instead of on the event loop's thread.
    """

    def __init__(self, run_batch: Callable[[list], list], size_of: Callable[[Any], int] = lambda request: 1,
                 max_batch: int = 64, max_wait_ms: float = 5.0, enabled: bool = True, run_in_thread: bool = False):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be at least 1 and max_wait_ms at least 0, got {max_batch} and {max_wait_ms}")
        self.run_batch, self.size_of = run_batch, size_of
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.enabled, self.run_in_thread = enabled, run_in_thread
        self.stats = BatchStats()
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None
        self.held = None  # a request that did not fit in the last batch

    async def submit(self, request) -> tuple[Any, int]:
        """Queue one request; wait for its result and the number of images in the batch it ran in
        (raises what run_batch raised for its batch)."""
        if self.worker is None:  # started on first use, inside the server's event loop
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self.serve_forever())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def next_batch(self) -> list[tuple[Any, asyncio.Future]]:
        """The next batch: the first queued request, then others until max_batch images or max_wait."""
        loop = asyncio.get_running_loop()
        first, self.held = (self.held, None) if self.held else (await self.queue.get(), None)
        batch = [first]
        if not self.enabled:
            return batch
        images, deadline = self.size_of(first[0]), loop.time() + self.max_wait
        while images < self.max_batch:
            remaining = deadline - loop.time()
            if self.queue.empty() and remaining <= 0:
                break
            try:  # what is queued already, else wait for the rest of max_wait
                item = self.queue.get_nowait() if not self.queue.empty() else await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            if images + self.size_of(item[0]) > self.max_batch:
                self.held = item  # too big for this batch: it starts the next one
                break
            batch.append(item)
            images += self.size_of(item[0])
        return batch

    async def serve_forever(self) -> None:
        """Take batches off the queue and answer them, one batch at a time."""
        while True:
            batch = await self.next_batch()
            requests = [request for request, _ in batch]
            try:
                if self.run_in_thread:
                    results = await asyncio.to_thread(self.run_batch, requests)
                else:  # blocks the loop for one batch; requests arriving meanwhile queue up for the next
                    results = self.run_batch(requests)
            except Exception as error:  # a bad batch fails its own requests, never the server
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            images = sum(self.size_of(request) for request in requests)
            self.stats.record(len(batch), images)
            for (_, future), result in zip(batch, results):
                if not future.done():  # a client that went away leaves a cancelled future
                    future.set_result((result, images))
