"""`python -m diffedu sample`: output format, reproducibility and clear errors.

Uses a tiny random UNet saved into a temporary data folder, so the test does not depend on
the shipped checkpoint (tests/test_shipped_models.py checks that one).
"""

import subprocess
import sys

import numpy as np
import pytest
import torch

from diffedu.__main__ import main
from diffedu.models.checkpoints import save_checkpoint
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
    main(args + ["--sampler", "heun", "--out", str(tmp_path / "h1.npz")])
    main(args + ["--sampler", "heun", "--batch-size", "3", "--out", str(tmp_path / "h2.npz")])
    main(args + ["--out", str(tmp_path / "d.npz")])
    heun, again, ddim = (np.load(tmp_path / f)["images"] for f in ("h1.npz", "h2.npz", "d.npz"))
    assert np.array_equal(heun, again) and not np.array_equal(heun, ddim)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label", "12"], "--label must be a digit 0-9"),
        (["--sampler", "ancestral", "--steps", "2000"], "--steps must be in 1..1000"),
        (["--sampler", "ddpm", "--steps", "50"], "use --sampler ancestral"),
        (["--steps", "0"], "--steps must be in 1..1000"),
        (["--n", "0"], "--n: must be at least 1, got 0"),
        (["--label", "3", "--all-labels"], "not allowed with argument"),
        (["--unconditional", "--guidance", "2"], "--guidance needs digits to steer towards"),
        (["--sampler", "rk4"], "invalid choice"),
        (["--sampler", "euler"], "mnist-unet cannot sample with --sampler euler: it takes ddim or ancestral or ddpm or heun"),
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

    real_ddim, calls = samplers.ddim_sample, []

    def interrupted_in_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_ddim(*args, **kwargs)

    monkeypatch.setattr(samplers, "ddim_sample", interrupted_in_second_batch)
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
