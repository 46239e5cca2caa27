"""diffedu.launch: one command on several processes, stopped the way the rest of the course stops.

Ctrl-C on the launcher: every process stops at the same step, one line is printed, the checkpoint
is saved once, exit code 130, no traceback. A killed process: a survivor saves the steps done so
far and says so in one line, exit code 130, and the run resumes from there.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
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
    config = replace(CONFIG, train_steps={steps}, checkpoint_every=10**6, checkpoint_minutes=0.5 / 60)
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


def _wait_for_steps(process: subprocess.Popen, run_dir: Path) -> list[psutil.Process]:
    """Wait until the two processes train together (their first checkpoint, by the clock); returns them."""
    deadline = time.time() + 90
    while time.time() < deadline and not (run_dir / CHECKPOINT_FILE).exists():
        time.sleep(0.1)
    time.sleep(1.0)
    return psutil.Process(process.pid).children()



# Each of these starts several training processes (5-13 s each on 2 cores, about a minute in all): they run
# when asked, DIFFEDU_TEST_PROCESSES=1, as .ci/run asks in a step of its own, so that ./course.sh test
# stays under 8 minutes. The single-process tests of this file always run.
MULTI_PROCESS = pytest.mark.skipif(os.environ.get("DIFFEDU_TEST_PROCESSES") != "1",
                                   reason="starts several training processes: DIFFEDU_TEST_PROCESSES=1 runs it, as .ci/run does")

def test_two_processes_finish_with_exit_0(tmp_path):
    process = _start(tmp_path, steps=12)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["step"] == 12


@MULTI_PROCESS
def test_ctrl_c_on_the_launcher_prints_once_saves_once_and_exits_130(tmp_path):
    process = _start(tmp_path)
    _wait_for_steps(process, tmp_path / "run")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted at step"), lines
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)
    assert f"step {saved['step']}:" in lines[0] and saved["step"] > 0


@MULTI_PROCESS
@pytest.mark.parametrize("killed", [0, 1])
def test_a_killed_process_leaves_a_checkpoint_from_the_survivor(tmp_path, killed):
    process = _start(tmp_path)
    workers = _wait_for_steps(process, tmp_path / "run")
    workers[killed].kill()
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130
    assert "Traceback" not in err
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and "another process of this run stopped" in lines[0], lines
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)  # whole: its losses match its step
    assert saved["step"] > 0 and f"saving step {saved['step']} from process {1 - killed}" in lines[0]
    if killed == 0:
        return
    # and the run goes on from there, on two processes again
    resumed = _start(tmp_path, steps=saved["step"] + 4)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["step"] == saved["step"] + 4


def _cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffedu", "train", "mnist-classifier", "--processes", "2",
                             "--run-dir", str(tmp_path / "run"), "--no-metrics", *args], env=ENV, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@MULTI_PROCESS
def test_the_command_line_trains_on_two_processes_and_reports_once(tmp_path):
    out, err = _cli(tmp_path, "--steps", "4").communicate(timeout=180)
    assert "Traceback" not in err, err
    assert out.count("finished: 4 steps") == 1, out
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["processes"] == 2


@MULTI_PROCESS
def test_ctrl_c_on_the_command_line_with_two_processes(tmp_path):
    process = _cli(tmp_path, "--steps", "100000")
    err_chars: list[str] = []  # the progress bar's output, read as it comes

    def read_stderr():
        while char := process.stderr.read(1):
            err_chars.append(char)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline and not re.search(r"\| [1-9]\d*/100000 \[", "".join(err_chars)):
        time.sleep(0.2)  # until the bar shows a finished step (a fixed wait failed on a loaded machine)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    reader.join(timeout=10)
    err = "".join(err_chars)
    assert process.returncode == 130
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert len(said) == 1, err
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_FILE)["step"] > 0
