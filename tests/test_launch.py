"""diffedu.launch: one command on several processes, stopped the way the rest of the course stops.

Ctrl-C on the launcher: every process stops at the same step, one line is printed, the checkpoint
is saved once, exit code 130, no traceback. A killed process: a survivor saves the steps done so
far and says so in one line, exit code 130, and the run resumes from there.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from diffedu.train import CHECKPOINT_FILE, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

WORKER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from dataclasses import replace
    from test_train_resume import CONFIG, _fresh_model, _loss, _problem
    from diffedu.train import train

    slow = lambda model, batch, gen: (time.sleep(0.05), _loss(model, batch, gen))[1]
    config = replace(CONFIG, train_steps={steps}, checkpoint_every=10**6)
    result = train(_fresh_model(), slow, _problem(), config, {run_dir!r}, device="cpu", progress=False)
    sys.exit(130 if result.interrupted else 0)
    """
)


def _start(tmp_path: Path, steps: int = 10**6) -> subprocess.Popen:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path / "run"), steps=steps))
    launcher = f"import sys; from diffedu.launch import launch; sys.exit(launch([sys.executable, {str(worker)!r}], 2))"
    return subprocess.Popen([sys.executable, "-c", launcher], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_steps(process: subprocess.Popen, seconds: float = 2.5) -> list[psutil.Process]:
    """Let the two processes train together for a while; returns them."""
    deadline = time.time() + 60
    while time.time() < deadline and len(psutil.Process(process.pid).children()) < 2:
        time.sleep(0.1)
    time.sleep(seconds)
    return psutil.Process(process.pid).children()


def test_two_processes_finish_with_exit_0(tmp_path):
    process = _start(tmp_path, steps=12)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["step"] == 12


def test_ctrl_c_on_the_launcher_prints_once_saves_once_and_exits_130(tmp_path):
    process = _start(tmp_path)
    _wait_for_steps(process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted at step"), lines
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)
    assert f"step {saved['step']}:" in lines[0] and saved["step"] > 0


@pytest.mark.parametrize("killed", [0, 1])
def test_a_killed_process_leaves_a_checkpoint_from_the_survivor(tmp_path, killed):
    process = _start(tmp_path)
    workers = _wait_for_steps(process)
    workers[killed].kill()
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130
    assert "Traceback" not in err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and "another process of this run stopped" in lines[0], lines
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)  # whole: its losses match its step
    assert saved["step"] > 0 and f"saving step {saved['step']} from process {1 - killed}" in lines[0]
    # and the run goes on from there, on two processes again
    resumed = _start(tmp_path, steps=saved["step"] + 4)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["step"] == saved["step"] + 4
