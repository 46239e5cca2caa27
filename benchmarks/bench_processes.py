"""Data-parallel training on one CPU: 1 process x 2 threads against 2 processes x 1 thread.

    python benchmarks/bench_processes.py            (about 3 minutes; writes benchmarks/results/processes.json)

Trains mnist-unet's network with its loss for STEPS steps of BATCH images, through diffedu.train,
once in one process with 2 PyTorch threads and once as 2 processes of 1 thread each, started by
`accelerate launch --multi_gpu --num_processes 2` (the processes ask for the CPU, so they join
over gloo, as the test in tests/test_distributed.py does). Images per second come from each run's
checkpoint (its training time, without start-up). On a 2-core CPU either may win:
both use both cores, and the 2-process run adds a gradient all-reduce per step. GPU scaling is
not measured here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
STEPS, BATCH, REPEATS = 120, 64, 2
SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from dataclasses import replace
    from diffedu.course.data import load_mnist
    from diffedu.losses import diffusion_loss_fn
    from diffedu.train import train
    from diffedu.zoo.mnist_unet import DIFFUSION, TRAIN, build

    torch.set_num_threads(int(sys.argv[3]))
    data = load_mnist("train")
    config = replace(TRAIN, train_steps=int(sys.argv[2]), batch_size={batch}, checkpoint_every=10**9, time_budget_minutes=None)
    train(build(), diffusion_loss_fn(DIFFUSION.noise_schedule(), DIFFUSION), (data.images, data.labels), config, sys.argv[1],
          device="cpu", progress=False)
    """
).format(batch=BATCH)


def run(processes: int, threads: int, folder: Path) -> dict:
    script = folder / "train.py"
    script.write_text(SCRIPT)
    args = [str(script), str(folder / "run"), str(STEPS), str(threads)]
    command = [sys.executable, *args] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - start
    saved = torch.load(folder / "run" / "checkpoint.pt", weights_only=True)
    return {"processes": processes, "threads_per_process": threads, "steps": saved["step"], "batch": BATCH,
            "training_seconds": round(saved["elapsed_seconds"], 2), "wall_seconds_with_startup": round(wall, 2),
            "images_per_second": round(saved["step"] * BATCH / saved["elapsed_seconds"], 1)}


def main() -> None:
    rows = []
    for repeat in range(REPEATS):
        for processes, threads in ((1, 2), (2, 1)):
            with tempfile.TemporaryDirectory() as folder:
                row = run(processes, threads, Path(folder))
            row["repeat"] = repeat
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "benchmarks" / "results" / "processes.json"
    out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "torch": torch.__version__,
                               "cpu_count": os.cpu_count(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
