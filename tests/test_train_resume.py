"""Training resumes exactly however it was stopped, loses little when killed, and never runs code
from a checkpoint.

- Ctrl-C (SIGINT) and a launcher's SIGTERM become a flag: the step under way finishes, then a
  checkpoint is saved; resuming gives weights, EMA and losses bit-identical to a run that was never
  stopped, wherever in the step the signal came (in the loss, between the optimizer step and the
  EMA, ...).
- A KeyboardInterrupt raised inside the step (a second Ctrl-C) saves only a whole step's state:
  before the update the step is undone, inside the update the last checkpoint is kept.
- Checkpoints come every `checkpoint_every` steps and at least every `checkpoint_minutes`.
- checkpoint.pt is loaded with weights_only=True: a pickle that runs code is refused in one line.
"""

import json
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

import diffedu.train as train_module
from diffedu.models.checkpoints import CheckpointError, file_sha256
from diffedu.train import CHECKPOINT_FILE, TrainConfig, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]


def _problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=gen)
    return (x, x @ torch.tensor([[2.0], [-1.0]]) + 0.5)


def _loss(model, batch, generator):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x + 0.01 * torch.randn(x.shape, generator=generator)), y)


def _model():  # with dropout: its masks come from PyTorch's global random stream
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))


def _fresh_model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _model()


CONFIG = TrainConfig(train_steps=40, batch_size=16, lr=0.05, warmup_steps=5, checkpoint_every=10, ema_decay=0.9, seed=5)


def _run(run_dir=None, loss_fn=_loss, config=CONFIG):
    return train(_fresh_model(), loss_fn, _problem(), config, run_dir, device="cpu", progress=False)


def _same(a, b):
    """Bit-identical weights, EMA and losses."""
    assert a.losses == b.losses
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)
    for pa, pb in zip(a.ema.state_dict().values(), b.ema.state_dict().values()):
        assert torch.equal(pa, pb)


@pytest.fixture(scope="module")
def straight():
    return _run()


def _signal_in_loss(at_call, sig):
    calls = []

    def loss_fn(model, batch, generator):
        calls.append(1)
        if len(calls) == at_call:
            os.kill(os.getpid(), sig)  # delivered to the handler at the next bytecode, mid-step
        return _loss(model, batch, generator)

    return loss_fn


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_in_the_loss_finishes_the_step_saves_and_resumes_exactly(tmp_path, straight, sig):
    first = _run(tmp_path, _signal_in_loss(17, sig))
    assert first.interrupted and first.step == 17  # step 17 (the 17th call) finished, then it stopped
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 17
    second = _run(tmp_path)
    assert second.resumed_from == 17 and second.finished
    _same(second, straight)


@pytest.mark.parametrize("presses", [1, 2], ids=["Ctrl-C", "Ctrl-C twice"])
def test_ctrl_c_between_the_optimizer_step_and_the_ema_finishes_the_step_and_resumes_exactly(
        tmp_path, straight, monkeypatch, presses):
    """The optimizer has stepped, the EMA has not: the step finishes first, even when Ctrl-C is
    pressed twice (stopping there would leave a half-made step)."""
    original, calls = train_module.update_ema, []

    def update_ema(ema, model, step, decay):
        calls.append(1)
        if len(calls) == 23:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        original(ema, model, step, decay)

    monkeypatch.setattr(train_module, "update_ema", update_ema)
    first = _run(tmp_path)
    assert first.interrupted and first.step == 23
    monkeypatch.setattr(train_module, "update_ema", original)
    _same(_run(tmp_path), straight)


def test_a_second_ctrl_c_in_the_loss_stops_at_once_and_redoes_that_step(tmp_path, straight):
    calls = []

    def loss_fn(model, batch, generator):
        calls.append(1)
        if len(calls) == 14:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the first one is handled (a flag) ...
            os.kill(os.getpid(), signal.SIGINT)  # ... the second raises KeyboardInterrupt here
            time.sleep(0.01)
        return _loss(model, batch, generator)

    first = _run(tmp_path, loss_fn)
    assert first.interrupted and first.step == 13  # step 14 was stopped before its update, and undone
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"] == 13
    _same(_run(tmp_path), straight)


@pytest.mark.parametrize("where", ["loss", "ema"])
def test_a_keyboard_interrupt_raised_inside_the_step_resumes_exactly(tmp_path, straight, monkeypatch, where):
    """Raised in the loss (before the update): that step is undone and the state saved. Raised
    between the optimizer step and the EMA: the step can be neither finished nor undone, so the
    last checkpoint (step 20) is kept."""
    calls = []

    def boom():
        calls.append(1)
        if len(calls) == 26:
            raise KeyboardInterrupt

    loss_fn = _loss
    if where == "loss":
        def loss_fn(model, batch, generator):
            return (boom(), _loss(model, batch, generator))[1]
    else:
        original = train_module.update_ema
        monkeypatch.setattr(train_module, "update_ema", lambda *args: (boom(), original(*args)))
    first = _run(tmp_path, loss_fn)
    assert first.interrupted
    saved_step = load_checkpoint(tmp_path / CHECKPOINT_FILE)["step"]
    assert saved_step == (25 if where == "loss" else 20)
    monkeypatch.undo()
    second = _run(tmp_path)
    assert second.resumed_from == saved_step
    _same(second, straight)


def test_training_leaves_the_global_random_stream_alone():
    before = torch.random.get_rng_state()
    _run(config=replace(CONFIG, train_steps=5))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_checkpoints_come_by_the_clock_too(tmp_path):
    """With checkpoints every 10**6 steps, the clock (checkpoint_minutes) still saves the run."""
    def slow(model, batch, generator):
        return (time.sleep(0.01), _loss(model, batch, generator))[1]
    config = replace(CONFIG, train_steps=10**6, checkpoint_every=10**6, checkpoint_minutes=0.1 / 60,
                     time_budget_minutes=0.6 / 60)
    saves = []
    original = train_module.save
    train_module.save = lambda state, *args, **kwargs: (saves.append(state.step), original(state, *args, **kwargs))
    try:
        result = _run(tmp_path, slow, config)
    finally:
        train_module.save = original
    assert not result.finished and len(saves) >= 3  # several saves by the clock, then the one at the budget
    assert all(step % train_module.LOG_EVERY == 0 for step in saves[:-1])


KILLED = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from dataclasses import replace
    from test_train_resume import CONFIG, _fresh_model, _loss, _problem
    from diffedu.train import train

    slow = lambda model, batch, gen: (time.sleep(0.02), _loss(model, batch, gen))[1]
    config = replace(CONFIG, train_steps=10**6, checkpoint_every=10**6, checkpoint_minutes=0.5 / 60)
    train(_fresh_model(), slow, _problem(), config, {run_dir!r}, device="cpu", progress=False)
    """
)


def test_a_killed_run_loses_at_most_the_checkpoint_interval(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", KILLED.format(tests=str(Path(__file__).parent), run_dir=str(tmp_path))],
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    checkpoint = tmp_path / CHECKPOINT_FILE
    deadline = time.time() + 60
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.05)
    time.sleep(1.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = load_checkpoint(checkpoint)
    assert saved["step"] > 0 and len(saved["losses"]) == saved["step"]  # saved by the clock, whole


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _malicious(run_dir: Path, marker: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"step": RunsCode(str(marker))}, run_dir / CHECKPOINT_FILE)


def test_a_malicious_checkpoint_runs_nothing_and_is_named_in_one_line(tmp_path):
    marker = tmp_path / "PWNED"
    _malicious(tmp_path / "evil", marker)
    with pytest.raises(CheckpointError, match="could run code") as error:
        _run(tmp_path / "evil")
    assert not marker.exists() and "\n" not in str(error.value)


def test_a_malicious_checkpoint_from_the_command_line_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    _malicious(tmp_path / "evil", marker)
    result = subprocess.run([sys.executable, "-m", "diffedu", "train", "mnist-classifier", "--steps", "5",
                             "--run-dir", str(tmp_path / "evil")], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 1 and not marker.exists()
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty", "not-a-dict", "inconsistent", "folder"])
def test_a_damaged_checkpoint_is_named_in_one_line(tmp_path, content):
    good = tmp_path / "good"
    _run(good, config=replace(CONFIG, train_steps=10))
    path = tmp_path / "bad" / CHECKPOINT_FILE
    path.parent.mkdir()
    data = (good / CHECKPOINT_FILE).read_bytes()
    if content == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif content == "garbage":
        path.write_bytes(os.urandom(5000))
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "not-a-dict":
        torch.save([1, 2, 3], path)
    elif content == "inconsistent":
        saved = torch.load(good / CHECKPOINT_FILE, weights_only=True)
        torch.save({**saved, "losses": saved["losses"][:3]}, path)
    else:
        path.mkdir()
    with pytest.raises(CheckpointError) as error:
        _run(path.parent)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_another_models_run_folder_is_named_in_one_line(tmp_path):
    _run(tmp_path, config=replace(CONFIG, train_steps=10))
    with pytest.raises(CheckpointError, match="another model"):
        train(torch.nn.Linear(2, 1), _loss, _problem(), CONFIG, tmp_path, device="cpu", progress=False)


def test_no_library_code_loads_pickles():
    """Every torch.load in the course passes weights_only=True; no pickle.load, no allow_pickle=True."""
    offenders = []
    for path in [*ROOT.glob("diffedu/**/*.py"), *ROOT.glob("tools/**/*.py"), *ROOT.glob("benchmarks/*.py"),
                 *ROOT.glob("tests/*.py"), *ROOT.glob("solutions/*.py"), *ROOT.glob("chapters/*.ipynb")]:
        text = path.read_text()
        for line in text.splitlines():
            if ("torch.load(" in line and "weights_only=True" not in line) or "pickle.load" in line \
                    or "allow_pickle=True" in line:
                if path.name != Path(__file__).name:
                    offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert not offenders, offenders


def test_two_identical_runs_write_the_same_model_bytes(tmp_path):
    """The same command twice, in two processes: the same weights file, byte for byte, so the model
    card's SHA-256 is the same (safetensors' metadata is written in a fixed order)."""
    hashes = []
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-m", "diffedu", "train", "mnist-classifier", "--steps", "3", "--no-metrics",
                        "--run-dir", str(tmp_path / run)], check=True, capture_output=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=180)
        card = json.loads((tmp_path / run / "mnist-classifier.json").read_text())
        assert card["sha256"]["mnist-classifier.safetensors"] == file_sha256(tmp_path / run / "mnist-classifier.safetensors")
        hashes.append(card["sha256"]["mnist-classifier.safetensors"])
    assert hashes[0] == hashes[1]
