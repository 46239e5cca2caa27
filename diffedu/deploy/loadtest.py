"""Start the digit service in the background and measure it under load (chapter 11).

    python -m diffedu loadtest --clients 50 --seconds 60      (against a server it starts itself)

`closed_loop` runs `clients` simulated users, each sending one request, waiting for the answer and
sending the next at once, for `seconds` (or until `max_requests`). Then, by Little's law (11.5),
clients = throughput x latency: the latency a user sees grows with the number of users unless
the throughput does too, and dynamic batching is what lets the throughput grow.

Traffic goes to this machine only: `closed_loop` refuses any address outside the loopback range.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from diffedu.deploy import outside_event_loop

LOOPBACK_NAMES = ("localhost",)


def check_loopback(url: str) -> None:
    """Raise ValueError unless url's host is this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlparse(url).hostname or ""
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"a load test sends traffic to this machine only (127.0.0.1, localhost, ::1), got {host!r}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(port: int, *options: str) -> list[str]:
    """The command that starts the service: the one the tests, the benchmark, the chapter and the
    Dockerfile run (the Dockerfile with --host 0.0.0.0 --port 8000)."""
    return [sys.executable, "-m", "diffedu", "serve", "--port", str(port), *options]


@contextmanager
def running_server(*options: str, port: int | None = None, timeout: float = 120.0):
    """Start `python -m diffedu serve` on 127.0.0.1 in a child process, wait until /health answers, yield its
    URL, and stop it afterwards (also on an error or Ctrl-C). Its output goes to build/deploy/server-PORT.log."""
    import httpx

    port = port or free_port()
    log_path = Path("build") / "deploy" / f"server-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(serve_command(port, *options), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped while starting (exit code {process.returncode}): see {log_path}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer /health within {timeout:.0f} s: see {log_path}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


async def one_client(client, url: str, index: int, stop_at: float, budget: list[int], timings: list[tuple[float, float]],
                     errors: list[str], n: int) -> None:
    """One simulated user: request, wait, request again, until the time or the shared budget runs out.
    Appends (start, end) of each answered request to `timings` (time.monotonic())."""
    request_number = 0
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        body = {"digit": (index + request_number) % 10, "n": n, "seed": index * 1_000_003 + request_number}
        start = time.monotonic()
        try:
            async with client.post(f"{url}/generate", json=body) as response:
                content = await response.read()
            if response.status != 200:
                errors.append(f"{response.status}: {content[:200].decode(errors='replace')}")
            else:
                timings.append((start, time.monotonic()))
        except Exception as error:  # a refused or dropped connection is an error of the run, not of the test
            errors.append(f"{type(error).__name__}: {error}")
        request_number += 1


async def get_json(url: str) -> dict:
    """GET url as JSON, on a connection of its own (the users' connections are never free for long)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, session.get(url) as response:
        return await response.json()


async def closed_loop_async(url: str, clients: int, seconds: float, max_requests: int, n: int, warmup: float) -> dict:
    import aiohttp

    check_loopback(url)
    connector = aiohttp.TCPConnector(limit=clients)  # one kept-alive connection per client
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as client:
        timings: list[tuple[float, float]] = []
        errors: list[str] = []
        budget = [max_requests]
        start = time.monotonic()
        users = asyncio.gather(*(one_client(client, url, i, start + warmup + seconds, budget, timings, errors, n)
                                 for i in range(clients)))
        await asyncio.sleep(warmup)  # the users are busy; now the measurement window opens
        health_before = await get_json(f"{url}/health")
        await users
        window_end = min(start + warmup + seconds, time.monotonic())
        health_after = await get_json(f"{url}/health")
    window = window_end - (start + warmup)
    answered = [end - begin for begin, end in timings if begin >= start + warmup]  # latencies of requests sent in the window
    completed = sum(start + warmup <= end <= window_end for _, end in timings)  # throughput: answers within the window
    before, after = health_before["counters"], health_after["counters"]
    batches = after["batches"] - before["batches"]
    milliseconds = np.array(answered) * 1000 if answered else np.array([float("nan")])
    return {
        "clients": clients, "images_per_request": n, "seconds": round(window, 2), "warmup_seconds": warmup,
        "requests": len(answered), "errors": len(errors), "first_errors": errors[:3],
        "requests_per_second": round(completed / window, 1),
        "images_per_second": round(completed * n / window, 1),
        "latency_ms": {"mean": round(float(milliseconds.mean()), 1),
                       **{f"p{q}": round(float(np.percentile(milliseconds, q)), 1) for q in (50, 95, 99)}},
        "mean_batch": round((after["images"] - before["images"]) / batches, 2) if batches else 0.0,
        "server_memory_mb": {"before": health_before["memory_mb"], "after": health_after["memory_mb"]},
        "batching": health_after["batching"],
    }


def closed_loop(url: str, clients: int = 10, seconds: float = 10.0, max_requests: int = 100_000, n: int = 1,
                warmup: float = 1.0) -> dict:
    """Load-test a running service at `url` (loopback only) with `clients` closed-loop users, each asking
    for `n` digits a request (at most max_requests in all). The users start together and run for
    `warmup` seconds unmeasured, until the queue has settled (Little's law (11.5) is about a steady
    state); then for `seconds` more, the measurement window.

    Returns, for the window: requests answered (sent within it), errors, requests and images per second
    (answers within it), latency mean and percentiles p50/p95/p99 in ms, the mean batch the server ran,
    and the server's memory at its start and end."""
    if clients < 1 or seconds <= 0 or max_requests < 1 or warmup < 0:
        raise ValueError("clients and max_requests must be at least 1, seconds positive and warmup at least 0, got "
                         f"{clients}, {max_requests}, {seconds}, {warmup}")
    return outside_event_loop(asyncio.run, closed_loop_async(url, clients, seconds, max_requests, n, warmup))
