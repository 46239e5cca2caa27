"""Run one command on several processes of this machine: `python -m diffedu train NAME --processes 2`.

A launcher starts the same program once per process and tells each copy, through environment
variables, who it is (RANK 0, 1, ...; WORLD_SIZE) and where to meet the others (MASTER_ADDR,
MASTER_PORT); Accelerate reads them in diffedu.distributed. This is what `torchrun` and
`accelerate launch` do too, and they remain the way for several machines. This one is small
enough to read, and it stops the way the rest of the course does:

- Ctrl-C reaches the launcher alone (the processes run in their own sessions); it passes it on
  once to every process, they agree on a step, the first one saves, and the launcher exits
  with 130 after one line.
- A process that dies (killed, out of memory) breaks the others' next all-reduce: a survivor
  says so in one line and saves the steps done so far (diffedu.train); the exit code is 130.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

GRACE_SECONDS = 30  # after Ctrl-C or a death: how long the processes get to save and stop before they are killed


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_environment(rank: int, processes: int, port: int) -> dict[str, str]:
    """What process `rank` of `processes` is told: who it is, and where the group meets."""
    env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(processes),
           "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # no C++ warnings when Ctrl-C comes while the processes meet
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of each process taking them all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return env


def launch(command: list[str], processes: int) -> int:
    """Run `command` (e.g. [sys.executable, "-m", "diffedu", "train", "mnist-unet"]) on `processes`
    processes; returns the exit code: 0 when all finished, 130 after Ctrl-C or when a process died
    (the run can be continued from its checkpoint), else the first failing process's code."""
    port = free_port()
    workers = [subprocess.Popen(command, env=worker_environment(rank, processes, port),
                                start_new_session=True)  # Ctrl-C in the terminal reaches the launcher only
               for rank in range(processes)]
    interrupts = []

    def on_signal(signum, frame):
        interrupts.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping_since = None  # since when the processes should be stopping: after Ctrl-C, or after one died
    try:
        while any(worker.poll() is None for worker in workers):
            if stopping_since is None and (interrupts or any(worker.returncode not in (None, 0) for worker in workers)):
                stopping_since = time.monotonic()
            if stopping_since is not None and time.monotonic() - stopping_since > GRACE_SECONDS:
                for worker in workers:  # e.g. one still waiting to meet a process that is gone
                    if worker.poll() is None:
                        worker.kill()
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [worker.returncode for worker in workers]
    if interrupts or any(code < 0 or code == 130 for code in codes):  # Ctrl-C, or killed: the run can go on
        return 130
    return next((code for code in codes if code != 0), 0)
