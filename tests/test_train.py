"""The training loop: it learns, it resumes exactly, and a killed run loses nothing beyond
its last checkpoint."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from diffedu.train import CHECKPOINT_FILE, TrainConfig, lr_at, train


def _problem():
    """A tiny regression problem: learn y = 3x - 1 with a linear model."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 1, generator=gen)
    return (x, 3 * x - 1)


def _loss(model, batch, generator):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x + 0.01 * torch.randn(x.shape, generator=generator)), y)


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(1, 1)


CONFIG = TrainConfig(train_steps=60, batch_size=32, lr=0.1, warmup_steps=5, checkpoint_every=10, ema_decay=0.9, seed=3)


def test_it_learns_and_keeps_an_ema():
    result = train(_model(), _loss, _problem(), CONFIG, device="cpu", progress=False)
    assert result.finished and result.step == 60 and len(result.losses) == 60
    assert result.losses[-1] < 0.01 < result.losses[0]
    assert abs(result.model.weight.item() - 3) < 0.05 and abs(result.ema.weight.item() - 3) < 0.1


def test_learning_rate_warms_up_then_decays():
    lrs = [lr_at(s, CONFIG) for s in range(CONFIG.train_steps)]
    assert lrs[0] == CONFIG.lr / CONFIG.warmup_steps and max(lrs) == CONFIG.lr
    assert abs(lrs[-1] - CONFIG.lr * CONFIG.min_lr_ratio) < 0.01 * CONFIG.lr


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight = train(_model(), _loss, _problem(), CONFIG, device="cpu", progress=False)
    # the same run stopped by Ctrl-C in its 31st step, then started again
    calls = []

    def interrupted_loss(model, batch, generator):
        calls.append(1)
        if len(calls) == 31:
            raise KeyboardInterrupt
        return _loss(model, batch, generator)

    first = train(_model(), interrupted_loss, _problem(), CONFIG, tmp_path, device="cpu", progress=False)
    assert first.step == 30 and not first.finished and (tmp_path / CHECKPOINT_FILE).exists()
    second = train(_model(), _loss, _problem(), CONFIG, tmp_path, device="cpu", progress=False)
    assert second.resumed_from == 30 and second.finished
    assert second.losses == straight.losses
    assert torch.equal(second.model.weight, straight.model.weight)
    assert torch.equal(second.ema.weight, straight.ema.weight)


def test_time_budget_stops_and_saves(tmp_path):
    from dataclasses import replace

    config = replace(CONFIG, train_steps=10**9, time_budget_minutes=0.002)
    result = train(_model(), _loss, _problem(), config, tmp_path, device="cpu", progress=False)
    assert not result.finished and 0 < result.step < 10**9
    state = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert state["step"] == result.step


def test_budget_is_per_call_so_running_again_finishes(tmp_path):
    """A budget that stops the first call must not stop the next one at once: each call
    trains for up to its own budget, so running the command again always makes progress."""
    from dataclasses import replace

    def slow(model, batch, gen):
        return (time.sleep(0.01), _loss(model, batch, gen))[1]
    config = replace(CONFIG, train_steps=400, time_budget_minutes=0.25 / 60)  # a quarter of a second a call
    steps_seen, result = [], None
    for _ in range(200):
        result = train(_model(), slow, _problem(), config, tmp_path, device="cpu", progress=False)
        steps_seen.append(result.step)
        if result.finished:
            break
    assert result.finished and result.step == 400
    assert len(steps_seen) >= 3  # the budget did stop it several times
    assert all(later > earlier for earlier, later in zip(steps_seen, steps_seen[1:]))  # every call made progress


def test_non_positive_budget_is_an_error():
    from dataclasses import replace

    import pytest

    for bad in (0, -1, -0.5):
        with pytest.raises(ValueError, match="time_budget_minutes must be positive"):
            train(_model(), _loss, _problem(), replace(CONFIG, time_budget_minutes=bad), device="cpu", progress=False)


SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_train import CONFIG, _loss, _model, _problem
    from dataclasses import replace
    from diffedu.train import train

    slow = lambda model, batch, gen: (time.sleep(0.02), _loss(model, batch, gen))[1]
    train(_model(), slow, _problem(), replace(CONFIG, train_steps=100000), {run_dir!r}, device="cpu", progress=False)
    """
)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL a training process (no chance to clean up), then resume: the checkpoint on
    disk is whole, and training continues from exactly its step."""
    script = SCRIPT.format(tests=os.path.dirname(__file__), run_dir=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-c", script])
    checkpoint = tmp_path / CHECKPOINT_FILE
    deadline = time.time() + 60
    while time.time() < deadline:
        if checkpoint.exists() and torch.load(checkpoint, weights_only=True)["step"] >= 30:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["step"] >= 30 and saved["step"] % CONFIG.checkpoint_every == 0
    assert len(saved["losses"]) == saved["step"]
    from dataclasses import replace

    resumed = train(_model(), _loss, _problem(), replace(CONFIG, train_steps=saved["step"] + 10), tmp_path, device="cpu", progress=False)
    assert resumed.resumed_from == saved["step"] and resumed.step == saved["step"] + 10
    assert resumed.losses[: saved["step"]] == saved["losses"]  # nothing before the save is lost
