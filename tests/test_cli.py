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
from diffedu.checkpoints import save_checkpoint
from diffedu.models.unet import UNet, UNetConfig
from diffedu.recipes import DiffusionSettings

TINY = UNetConfig(base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2, patch_size=2)


@pytest.fixture()
def tiny_model_dir(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = UNet(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    config = {"unet": TINY.to_dict(), "diffusion": DiffusionSettings().__dict__}
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
    assert main(["sample", "mnist-unet", "--n", "3", "--steps", "2", "--out", str(tmp_path / "u.npz")]) == 0
    assert "labels" not in np.load(tmp_path / "u.npz")


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
        (["--guidance", "3"], "--guidance needs --label or --all-labels"),
        (["--sampler", "ddpm", "--steps", "2000"], "--steps must be in 1..1000"),
        (["--steps", "0"], "--steps must be in 1..1000"),
        (["--n", "0"], "--n must be at least 1"),
        (["--label", "3", "--all-labels"], "not allowed with argument"),
        (["--sampler", "euler"], "invalid choice"),
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


def test_help_explains_every_option():
    text = subprocess.run([sys.executable, "-m", "diffedu", "sample", "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--n", "--sampler", "--steps", "--seed", "--label", "--all-labels", "--guidance", "--out"):
        assert option in text


def test_ddpm_with_few_steps_is_seeded_and_differs_from_ddim(tiny_model_dir, tmp_path):
    args = ["sample", "mnist-unet", "--n", "4", "--steps", "4", "--seed", "1", "--all-labels"]
    main(args + ["--sampler", "ddpm", "--out", str(tmp_path / "p1.npz")])
    main(args + ["--sampler", "ddpm", "--out", str(tmp_path / "p2.npz")])
    main(args + ["--out", str(tmp_path / "d.npz")])
    ddpm, again, ddim = (np.load(tmp_path / f)["images"] for f in ("p1.npz", "p2.npz", "d.npz"))
    assert np.array_equal(ddpm, again) and not np.array_equal(ddpm, ddim)
