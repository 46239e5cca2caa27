"""Training on two CPU processes through Accelerate (gloo), the way a multi-GPU run works:
the same steps as one process with the same global batch, one checkpoint, a killed run that
resumes (on any number of processes) without losing its losses, and the command line under
`accelerate launch`. The GPU paths: each device's precision (checked here), and mixed-precision
and two-GPU training (skipped without GPUs)."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from diffedu.course.device import autocast_dtype
from diffedu.distributed import MIXED_PRECISION
from diffedu.train import CHECKPOINT_FILE, TrainConfig, train

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
    budget = float(sys.argv[6]) if len(sys.argv) > 6 else None
    train_unet(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), budget, device=sys.argv[5])
    """
)


def train_unet(run_dir, steps: int, accumulation: int = 1, slow: float = 0.0, budget_minutes: float | None = None,
               device: str = "cpu"):
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
    return train(build(), slowed, (data.images[:2000], data.labels[:2000]), config, run_dir, device=device, progress=False)


def launch(tmp_path: Path, run_dir: Path, processes: int = 2, steps: int = STEPS, slow: float = 0.0,
           budget_minutes: float | None = None, device: str = "cpu"):
    """The command that trains train_unet for `steps` steps on `processes` processes (CPU: gloo)."""
    script = tmp_path / "train_unet.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    args = [str(script), str(run_dir), str(steps), "1", str(slow), device] + ([str(budget_minutes)] if budget_minutes else [])
    return accelerate_launch(processes, args)


def accelerate_launch(processes: int, args: list[str]) -> list[str]:
    """`accelerate launch` with `processes` processes on this machine, every setting on the command line
    (no Accelerate config file). "--multi_gpu" is its launcher for several processes on one machine
    (torchrun underneath); on a machine without GPUs the processes join over gloo. ("--cpu --num_processes 2"
    starts one process unless MPI is installed.)"""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]


def run(command, timeout=180):
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def load(run_dir: Path) -> dict:
    return torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)



# Each of these starts several training processes (5-13 s each on 2 cores, about a minute in all): they run
# when asked, DIFFEDU_TEST_PROCESSES=1, as .ci/run asks in a step of its own, so that ./course.sh test
# stays under 8 minutes. The single-process tests of this file always run.
MULTI_PROCESS = pytest.mark.skipif(os.environ.get("DIFFEDU_TEST_PROCESSES") != "1",
                                   reason="starts several training processes: DIFFEDU_TEST_PROCESSES=1 runs it, as .ci/run does")

@MULTI_PROCESS
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


@MULTI_PROCESS
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


@MULTI_PROCESS
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


@MULTI_PROCESS
def test_the_command_line_under_accelerate_launch_trains_on_both_and_reports_and_saves_once(tmp_path):
    run_dir = tmp_path / "run"
    finished = run(accelerate_launch(2, ["-m", "diffedu", "train", "mnist-unet", "--steps", "4", "--run-dir", str(run_dir),
                                         "--no-metrics", "--threads", "1"]))
    assert finished.stdout.count("UNet with 0.65M parameters") == 1, finished.stdout  # the second process is quiet
    assert finished.stdout.count("finished: 4 steps") == 1 and "python -m diffedu evaluate mnist-unet" in finished.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == [CHECKPOINT_FILE, "mnist-unet.json", "mnist-unet.safetensors"]
    card = json.loads((run_dir / "mnist-unet.json").read_text())
    assert card["processes"] == 2 and card["train_steps"] == 4 and card["finished"] and card["metrics"] == {}
    assert load(run_dir)["processes"] == 2


@pytest.mark.parametrize("device, gpu_has_bf16, expected", [
    ("cuda", True, "bf16"), ("cuda", False, "fp16"), ("mps", False, "no"), ("cpu", False, "no")])
def test_each_device_trains_in_its_own_precision(monkeypatch, device, gpu_has_bf16, expected):
    """Ampere and newer GPUs: bfloat16; older ones: float16 with loss scaling; Apple GPUs and CPUs: float32."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: gpu_has_bf16)
    assert MIXED_PRECISION[autocast_dtype(device)] == expected


def test_mixed_precision_goes_through_the_accelerator_and_each_run_gets_its_own(monkeypatch):
    """bfloat16 autocast on a CPU that has it (pretended here), then a float32 run in the same Python session
    (Accelerate alone would keep the first run's precision)."""
    import diffedu.course.device

    seen = []

    def loss_fn(model, batch, generator):
        output = model(batch[0])
        seen.append(output.dtype)
        return output.float().pow(2).mean()

    data = (torch.randn(16, 4),)
    config = TrainConfig(train_steps=2, batch_size=8, warmup_steps=0, allow_cpu_bf16=True)
    monkeypatch.setattr(diffedu.course.device, "cpu_has_native_bf16", lambda: True)
    train(torch.nn.Linear(4, 4), loss_fn, data, config, device="cpu", progress=False)
    monkeypatch.setattr(diffedu.course.device, "cpu_has_native_bf16", lambda: False)
    train(torch.nn.Linear(4, 4), loss_fn, data, config, device="cpu", progress=False)
    assert seen == [torch.bfloat16] * 2 + [torch.float32] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here): mixed-precision training, "
                    "with float16's loss scale saved in the checkpoint")
def test_mixed_precision_training_on_a_gpu_resumes_with_its_loss_scale(tmp_path):
    from diffedu.losses import diffusion_loss_fn
    from diffedu.zoo.mnist_unet import DIFFUSION, build

    loss_fn = diffusion_loss_fn(DIFFUSION.noise_schedule(), DIFFUSION)
    data = (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    config = TrainConfig(train_steps=4, batch_size=16, warmup_steps=0, checkpoint_every=2)
    first = train(build(), loss_fn, data, config, tmp_path, device="cuda", progress=False)
    saved = load(tmp_path)
    fp16 = autocast_dtype("cuda") == torch.float16
    assert first.finished and all(math.isfinite(x) for x in first.losses) and bool(saved["scaler"]) == fp16
    longer = train(build(), loss_fn, data, replace(config, train_steps=6), tmp_path, device="cuda", progress=False)
    assert longer.losses[:4] == first.losses and longer.step == 6


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (none here): the two-process test "
                    "above runs the same code over gloo on CPUs")
def test_two_gpus_take_the_steps_of_one(tmp_path):
    run(launch(tmp_path, tmp_path / "two", device="cuda"))
    train_unet(tmp_path / "one", STEPS, accumulation=2, device="cuda")
    two, one = load(tmp_path / "two"), load(tmp_path / "one")
    assert two["processes"] == 2 and two["step"] == one["step"] == STEPS
    assert torch.allclose(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=2e-2, atol=1e-3)  # bf16/fp16
