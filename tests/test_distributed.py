"""Training on two CPU processes through Accelerate (gloo), the way a multi-GPU run works:
the same steps as one process with the same global batch, one checkpoint, and a killed run
that resumes (on any number of processes) without losing its losses."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from diffedu.train import CHECKPOINT_FILE

pytest.importorskip("accelerate")

STEPS = 24
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout's diffedu in the launched processes
SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import torch
    from test_distributed import train_unet
    torch.set_num_threads(1)  # two processes on two cores
    budget = float(sys.argv[5]) if len(sys.argv) > 5 else None
    train_unet(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), budget)
    """
)


def train_unet(run_dir, steps: int, accumulation: int = 1, slow: float = 0.0, budget_minutes: float | None = None):
    """mnist-unet's network and loss, on 2,000 digits, global batches of 32, a checkpoint every 6 steps."""
    from dataclasses import replace

    from diffedu.course.data import load_mnist
    from diffedu.losses import diffusion_loss_fn
    from diffedu.train import train
    from diffedu.zoo.mnist_unet import DIFFUSION, TRAIN, build

    data = load_mnist("train")
    config = replace(TRAIN, train_steps=steps, batch_size=32, warmup_steps=5, checkpoint_every=6,
                     grad_accumulation_steps=accumulation, time_budget_minutes=budget_minutes)
    loss = diffusion_loss_fn(DIFFUSION.noise_schedule(), DIFFUSION)
    slowed = lambda model, batch, generator: (time.sleep(slow), loss(model, batch, generator))[1]  # noqa: E731
    return train(build(), slowed, (data.images[:2000], data.labels[:2000]), config, run_dir, device="cpu", progress=False)


def launch(tmp_path: Path, run_dir: Path, processes: int = 2, steps: int = STEPS, slow: float = 0.0,
           budget_minutes: float | None = None):
    """The command that trains train_unet for `steps` steps on `processes` CPU processes."""
    script = tmp_path / "train_unet.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    args = [str(script), str(run_dir), str(steps), "1", str(slow)] + ([str(budget_minutes)] if budget_minutes else [])
    # "--multi_gpu" is Accelerate's launcher for several processes on one machine (torchrun underneath); the
    # script asks for the CPU, so the processes join over gloo. ("--cpu --num_processes 2" starts one process
    # unless MPI is installed.)
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]


def run(command, timeout=180):
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def load(run_dir: Path) -> dict:
    return torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)


def test_two_processes_take_the_steps_of_one_with_the_same_global_batch(tmp_path):
    """2 processes x 16 images = 1 process x 2 micro-batches of 16: the same shards, the same noise,
    the same averaged gradient; only the order of additions differs."""
    run(launch(tmp_path, tmp_path / "two"))
    train_unet(tmp_path / "one", STEPS, accumulation=2)  # in this process
    two, one = load(tmp_path / "two"), load(tmp_path / "one")
    assert two["processes"] == 2 and one["processes"] == 1 and two["step"] == one["step"] == STEPS
    assert torch.allclose(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-4, atol=1e-5)
    for name, value in one["model"].items():
        assert torch.allclose(two["model"][name], value, rtol=1e-3, atol=1e-5), name
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [CHECKPOINT_FILE]  # written once, no leftovers


def start_long_run(tmp_path: Path, run_dir: Path, until_step: int) -> subprocess.Popen:
    """A slowed 2-process run of 10,000 steps, returned once its checkpoint has reached until_step."""
    process = subprocess.Popen(launch(tmp_path, run_dir, steps=10_000, slow=0.05), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / CHECKPOINT_FILE).exists():
        time.sleep(0.2)
    while time.time() < deadline and load(run_dir)["step"] < until_step:
        time.sleep(0.2)
    return process


def test_a_killed_two_process_run_resumes_and_continues_on_one(tmp_path):
    run_dir = tmp_path / "killed"
    process = start_long_run(tmp_path, run_dir, until_step=12)
    import psutil  # (a dependency of accelerate)

    launcher = psutil.Process(process.pid)
    family = [launcher, *launcher.children(recursive=True)]  # the launcher and both workers (in their own sessions)
    for member in family:
        member.kill()  # SIGKILL: no chance to clean up
    process.wait()
    psutil.wait_procs(family, timeout=10)
    saved = load(run_dir)
    assert saved["step"] >= 12 and saved["step"] % 6 == 0 and len(saved["losses"]) == saved["step"]
    # relaunch on two processes for 6 more steps, then continue on one process for 6 more
    run(launch(tmp_path, run_dir, steps=saved["step"] + 6))
    after_two = load(run_dir)
    assert after_two["losses"][: saved["step"]] == saved["losses"] and after_two["step"] == saved["step"] + 6
    train_unet(run_dir, saved["step"] + 12, accumulation=2)  # in this process
    after_one = load(run_dir)
    assert after_one["losses"][: after_two["step"]] == after_two["losses"] and after_one["step"] == saved["step"] + 12


def test_two_processes_stop_together_at_the_budget_and_at_ctrl_c(tmp_path):
    """The time budget and Ctrl-C reach the two processes at slightly different moments; they agree
    on one step (otherwise the next all-reduce would wait forever), save once and exit cleanly."""
    budget = tmp_path / "budget"
    run(launch(tmp_path, budget, steps=10_000, slow=0.05, budget_minutes=0.05), timeout=120)
    saved = load(budget)
    assert 0 < saved["step"] < 10_000 and len(saved["losses"]) == saved["step"]

    interrupted = tmp_path / "interrupted"
    process = start_long_run(tmp_path, interrupted, until_step=6)
    process.send_signal(signal.SIGINT)  # Ctrl-C in the launcher's terminal: it passes SIGTERM on to the workers
    process.wait(timeout=60)
    saved = load(interrupted)
    assert 6 <= saved["step"] < 10_000 and len(saved["losses"]) == saved["step"]  # (resuming: the test above)
