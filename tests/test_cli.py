"""`python -m diffedu sample`: output format, reproducibility and clear errors; and the commands
never damage the shipped course (evaluate, publish, sample --out).

The sampling tests use a tiny random UNet saved into a temporary data folder, so they do not
depend on the shipped checkpoint (tests/test_shipped_models.py checks that one); the course's
safety tests use copies of the shipped classifier and mnist-fast in a temporary data folder.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffedu.__main__ import main
from diffedu.course.data import sha256_of
from diffedu.course.paths import REPO_ROOT
from diffedu.models.checkpoints import read_checkpoint, save_checkpoint
from diffedu.models.unet import UNet, UNetConfig
from diffedu.losses import DiffusionSettings

TINY = UNetConfig(base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2, patch_size=2)


@pytest.fixture()
def tiny_model_dir(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = UNet(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = {"unet": TINY.to_dict(), "diffusion": DiffusionSettings().to_dict()}
    save_checkpoint(model, "mnist-unet", config, {"notes": "test"}, tmp_path / "checkpoints")
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    return tmp_path


def test_sample_writes_uint8_images_and_labels_reproducibly(tiny_model_dir, tmp_path):
    args = ["sample", "mnist-unet", "--n", "12", "--steps", "5", "--seed", "3", "--all-labels", "--guidance", "2.0"]
    assert main(args + ["--out", str(tmp_path / "a.npz")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.npz"), "--batch-size", "5"]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["images"].shape == (12, 28, 28) and a["images"].dtype == np.uint8
    assert a["labels"].dtype == np.int64 and a["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert np.array_equal(a["images"], b["images"])  # same seed, same output, whatever the batching
    main(["sample", "mnist-unet", "--n", "12", "--steps", "5", "--seed", "4", "--all-labels", "--out", str(tmp_path / "c.npz")])
    assert not np.array_equal(a["images"], np.load(tmp_path / "c.npz")["images"])


def test_single_label_and_unconditional(tiny_model_dir, tmp_path):
    assert main(["sample", "mnist-unet", "--n", "3", "--steps", "2", "--label", "7", "--out", str(tmp_path / "s.npz")]) == 0
    assert np.load(tmp_path / "s.npz")["labels"].tolist() == [7, 7, 7]
    assert main(["sample", "mnist-unet", "--n", "3", "--steps", "2", "--unconditional", "--out", str(tmp_path / "u.npz")]) == 0
    assert "labels" not in np.load(tmp_path / "u.npz")


def test_plainest_command_draws_digits_with_the_recommended_guidance(tiny_model_dir, tmp_path, capsys):
    """No label option: the digits 0-9 in turn with the model's recommended guidance (the
    null class alone is a much weaker model), and the output says so."""
    assert main(["sample", "mnist-unet", "--n", "12", "--steps", "2", "--out", str(tmp_path / "d.npz")]) == 0
    assert np.load(tmp_path / "d.npz")["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert "guidance w = 1.5" in capsys.readouterr().out
    main(["sample", "mnist-unet", "--n", "12", "--steps", "2", "--all-labels", "--guidance", "1.5", "--out", str(tmp_path / "e.npz")])
    assert np.array_equal(np.load(tmp_path / "d.npz")["images"], np.load(tmp_path / "e.npz")["images"])


def test_heun_sampler_differs_from_ddim_and_is_reproducible(tiny_model_dir, tmp_path):
    args = ["sample", "mnist-unet", "--n", "4", "--steps", "4", "--seed", "1", "--all-labels"]
    main(args + ["--sampler", "pf-heun", "--out", str(tmp_path / "h1.npz")])
    main(args + ["--sampler", "pf-heun", "--batch-size", "3", "--out", str(tmp_path / "h2.npz")])
    main(args + ["--out", str(tmp_path / "d.npz")])
    heun, again, ddim = (np.load(tmp_path / f)["images"] for f in ("h1.npz", "h2.npz", "d.npz"))
    assert np.array_equal(heun, again) and not np.array_equal(heun, ddim)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label", "12"], "--label must be a digit 0-9"),
        (["--sampler", "ddpm", "--steps", "50"], "use --sampler ancestral"),
        (["--steps", "0"], "--steps: ddim takes 1 or more steps, got 0"),
        (["--n", "0"], "--n: must be in 1..100000, got 0"),
        (["--label", "3", "--all-labels"], "not allowed with argument"),
        (["--unconditional", "--guidance", "2"], "--guidance needs digits to steer towards"),
        (["--sampler", "rk4"], "invalid choice"),
        (["--sampler", "euler"], "mnist-unet cannot sample with --sampler euler: it takes ddim or ancestral or ddpm or pf-heun"),
        (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        (["--batch-size", "-1"], "--batch-size: must be at least 1, got -1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_bad_options_get_clear_errors(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "mnist-unet", "--out", str(tmp_path / "x.npz"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_more_steps_than_the_schedule_has_get_one_line(tiny_model_dir, tmp_path, capsys):
    """The upper bound is the loaded model's T (its schedule), checked by the front door."""
    assert main(["sample", "mnist-unet", "--sampler", "ancestral", "--steps", "2000", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: ancestral takes 1..1000 steps, got 2000"]


def test_missing_checkpoint_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    assert main(["sample", "mnist-unet", "--out", str(tmp_path / "x.npz")]) == 1
    assert "python -m diffedu train mnist-unet" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "mnist-unet", "--steps", "0"], "--steps: must be at least 1, got 0"),
        (["train", "mnist-unet", "--budget-minutes", "0"], "--budget-minutes: must be a positive number of minutes"),
        (["train", "mnist-unet", "--budget-minutes", "-1"], "--budget-minutes: must be a positive number of minutes"),
        (["evaluate", "mnist-unet", "--n", "0"], "--n: must be at least 1, got 0"),
        (["evaluate", "mnist-unet", "--n", "1"], "--n must be in 2..5000"),
        (["evaluate", "mini-sd", "--n", "1"], "--n does not apply"),
        (["sample", "mnist-unet", "--from", "no/such/run", "--out", "x.npz"], "--from no/such/run is not a folder"),
    ],
)
def test_bad_arguments_of_every_command_get_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_output_path_is_checked_before_any_work(tmp_path, monkeypatch, capsys):
    """An --out under an existing file fails at once (exit 2), before the model is even
    loaded: here there is no model at all, which would otherwise give exit 1."""
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path / "empty"))
    (tmp_path / "a_file").write_text("x")
    for out in (tmp_path / "a_file" / "x.npz", tmp_path / "a_file" / "deeper" / "x.npz"):
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", "mnist-unet", "--out", str(out)])
        assert exit_info.value.code == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(SystemExit):
        main(["sample", "mnist-unet", "--out", str(tmp_path / "folder.npz")])
    assert "is a folder" in capsys.readouterr().err


def test_ctrl_c_during_sampling_keeps_the_finished_batches(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from diffedu import samplers

    real_ddim, calls = samplers.ddim_states, []

    def interrupted_in_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_ddim(*args, **kwargs)

    monkeypatch.setattr(samplers, "ddim_states", interrupted_in_second_batch)
    out = tmp_path / "partial.npz"
    assert main(["sample", "mnist-unet", "--n", "6", "--batch-size", "3", "--steps", "2", "--out", str(out)]) == 130
    saved = np.load(out)
    assert saved["images"].shape == (3, 28, 28) and saved["labels"].tolist() == [0, 1, 2]
    err = capsys.readouterr().err
    assert "saved the 3 of 6 samples" in err and "Traceback" not in err


def test_one_progress_bar_for_the_whole_job(tiny_model_dir, tmp_path, capsys):
    main(["sample", "mnist-unet", "--n", "6", "--batch-size", "2", "--steps", "3", "--out", str(tmp_path / "p.npz")])
    err = capsys.readouterr().err
    assert "9/9" in err  # 3 batches x 3 steps on one bar
    assert "3/3" not in err.replace("9/9", "")  # and no bar per batch


def test_sample_from_a_run_folder(tiny_model_dir, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "mnist-unet"
    run.mkdir(parents=True)
    for name in ("mnist-unet.safetensors", "mnist-unet.json"):
        (run / name).write_bytes((tiny_model_dir / "checkpoints" / name).read_bytes())
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path / "empty"))  # nothing shipped: only --from can work
    assert main(["sample", "mnist-unet", "--n", "2", "--steps", "2", "--from", str(run), "--out", str(tmp_path / "r.npz")]) == 0


def test_top_level_help_is_quick_and_shows_examples():
    """--help must not import PyTorch (seconds on a laptop) and shows three examples."""
    code = ("import sys, contextlib, io\n"
            "from diffedu.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(out.getvalue())")
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert text.count("python -m diffedu ") >= 3


def test_help_explains_every_option():
    text = subprocess.run([sys.executable, "-m", "diffedu", "sample", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--n", "--sampler", "--steps", "--seed", "--label", "--all-labels", "--unconditional", "--guidance", "--out",
                   "--from", "--device"):
        assert option in text


def test_ancestral_sampling_on_few_steps_is_seeded_and_differs_from_ddim(tiny_model_dir, tmp_path):
    args = ["sample", "mnist-unet", "--n", "4", "--steps", "4", "--seed", "1", "--all-labels"]
    main(args + ["--sampler", "ancestral", "--out", str(tmp_path / "p1.npz")])
    main(args + ["--sampler", "ancestral", "--out", str(tmp_path / "p2.npz")])
    main(args + ["--out", str(tmp_path / "d.npz")])
    ddpm, again, ddim = (np.load(tmp_path / f)["images"] for f in ("p1.npz", "p2.npz", "d.npz"))
    assert np.array_equal(ddpm, again) and not np.array_equal(ddpm, ddim)


# The shipped course is never damaged: evaluate writes only where asked, publish checks what it
# installs and keeps the better model, sample never writes over the course's files.

SHIPPED = REPO_ROOT / "data" / "checkpoints"


@pytest.fixture()
def course_copy(tmp_path, monkeypatch):
    """A data folder with MNIST (linked) and copies of the shipped classifier and mnist-fast; the
    working directory is a fresh folder, so runs/ is made there."""
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    (data / "mnist.npz").symlink_to(REPO_ROOT / "data" / "mnist.npz")
    for name in ("mnist-classifier", "mnist-fast"):
        for suffix in (".safetensors", ".json"):
            shutil.copy2(SHIPPED / f"{name}{suffix}", data / "checkpoints" / f"{name}{suffix}")
    monkeypatch.setenv("DIFFEDU_DATA", str(data))
    monkeypatch.chdir(tmp_path)
    return data / "checkpoints"


def _hashes(folder):
    return {p.name: sha256_of(p) for p in sorted(folder.iterdir()) if p.is_file()}


def test_evaluate_leaves_the_course_alone_and_writes_where_asked(course_copy, tmp_path, capsys):
    """`evaluate mnist-fast --n 100` used to rewrite the tracked card (FID 15.141 became 90.032)."""
    before = _hashes(course_copy)
    assert main(["evaluate", "mnist-fast", "--n", "4"]) == 0
    out = capsys.readouterr().out
    assert "not rewritten" in out and out.count('"fid_real_vs_real"') == 1  # the metrics, printed once
    assert json.loads(out[out.index("{"): out.rindex("}") + 1])["steps_4"]["accuracy"] >= 0
    assert main(["evaluate", "mnist-fast", "--n", "4", "--from", str(course_copy)]) == 0
    assert _hashes(course_copy) == before
    assert main(["evaluate", "mnist-fast", "--n", "4", "--out", str(tmp_path / "m.json")]) == 0
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["metrics"]["n"] == 4 and saved["metrics"]["measured_with"] == "python -m diffedu evaluate mnist-fast --n 4"
    run = tmp_path / "runs" / "mnist-fast"
    run.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy2(course_copy / f"mnist-fast{suffix}", run / f"mnist-fast{suffix}")
    assert main(["evaluate", "mnist-fast", "--n", "4", "--from", str(run)]) == 0  # a run's card: updated
    assert json.loads((run / "mnist-fast.json").read_text())["metrics"]["n"] == 4
    assert _hashes(course_copy) == before


def _classifier_run(course_copy, run, change=None):
    run.mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy2(course_copy / f"mnist-classifier{suffix}", run / f"mnist-classifier{suffix}")
    if change:
        card = json.loads((run / "mnist-classifier.json").read_text())
        change(card)
        (run / "mnist-classifier.json").write_text(json.dumps(card))
    return run


def _one_error_line(capsys) -> str:
    """The one line on stderr, progress bars ("...%|███|...") aside."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_publish_refuses_a_damaged_run(course_copy, tmp_path, capsys):
    """A truncated .safetensors used to be published with exit 0."""
    before = _hashes(course_copy)
    run = _classifier_run(course_copy, tmp_path / "runs" / "truncated")
    weights = run / "mnist-classifier.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    assert main(["publish", "mnist-classifier", "--from", str(run)]) == 1
    assert "mnist-classifier.safetensors is damaged" in _one_error_line(capsys)
    assert _hashes(course_copy) == before


def test_publish_keeps_the_better_model_unless_forced(course_copy, tmp_path, capsys):
    """A 20-step classifier (accuracy 0.405) used to replace the shipped one (0.994) silently."""
    before = _hashes(course_copy)
    worse = _classifier_run(course_copy, tmp_path / "runs" / "worse", lambda card: card["metrics"].update(test_accuracy=0.405))
    unmeasured = _classifier_run(course_copy, tmp_path / "runs" / "unmeasured", lambda card: card.update(metrics={}))
    assert main(["publish", "mnist-classifier", "--from", str(worse)]) == 1
    line = _one_error_line(capsys)
    assert "worse than the one it would replace (test accuracy 0.405 against 0.994)" in line and "--force" in line
    assert main(["publish", "mnist-classifier", "--from", str(unmeasured)]) == 1
    assert "no metrics to compare" in _one_error_line(capsys)
    assert _hashes(course_copy) == before
    assert main(["publish", "mnist-classifier", "--from", str(worse), "--force"]) == 0
    assert json.loads((course_copy / "mnist-classifier.json").read_text())["metrics"]["test_accuracy"] == 0.405


def test_train_publishes_a_worse_model_only_with_force(course_copy, tmp_path, capsys):
    before = _hashes(course_copy)
    assert main(["train", "mnist-classifier", "--steps", "2", "--publish"]) == 1
    line = _one_error_line(capsys)
    assert "not published" in line and "publish mnist-classifier --from runs/mnist-classifier --force" in line
    assert _hashes(course_copy) == before
    assert main(["train", "mnist-classifier", "--steps", "2", "--publish", "--force", "--no-metrics"]) == 0
    assert json.loads((course_copy / "mnist-classifier.json").read_text())["train_steps"] == 2


def test_sample_never_writes_over_the_course_and_warns_about_unchecked_weights(tiny_model_dir, tmp_path, capsys):
    mnist = REPO_ROOT / "data" / "mnist.npz"
    before = sha256_of(mnist)
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "mnist-unet", "--n", "2", "--steps", "2", "--out", str(mnist)])
    assert exit_info.value.code == 2 and "the course's own files" in capsys.readouterr().err
    assert sha256_of(mnist) == before
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy2(tiny_model_dir / "checkpoints" / "mnist-unet.safetensors", run)  # no model card
    assert main(["sample", "mnist-unet", "--n", "2", "--steps", "2", "--from", str(run), "--out", str(tmp_path / "u.npz")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "has no model card" in warnings[0] and "unchecked" in warnings[0]


SAVE = """
import sys, torch
from diffedu.models.checkpoints import file_sha256, save_checkpoint
torch.manual_seed(0)
model = torch.nn.Linear(16, 16)
print(file_sha256(save_checkpoint(model, "tiny", {"in": 16, "out": 16}, {"finished": True}, sys.argv[1])))
"""


def test_identical_saves_write_identical_bytes_in_separate_processes(tmp_path):
    """safetensors keeps metadata in a hash map: with two keys their order, and so the SHA-256,
    changed from process to process (about half the time). One key makes the bytes repeatable."""
    digests = {subprocess.run([sys.executable, "-c", SAVE, str(tmp_path / str(k))], capture_output=True, text=True,
                              check=True).stdout.strip() for k in range(4)}
    assert len(digests) == 1


def test_weights_saved_with_the_older_two_metadata_keys_still_load(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(2, 2)}, str(tmp_path / "old.safetensors"), metadata={"name": "old", "config": '{"in": 2}'})
    digest = sha256_of(tmp_path / "old.safetensors")
    (tmp_path / "old.json").write_text(json.dumps({"finished": True, "sha256": {"old.safetensors": digest}}))
    state, config, _ = read_checkpoint("old", tmp_path)
    assert config == {"in": 2} and torch.equal(state["weight"], torch.ones(2, 2))
