"""Latent diffusion (chapter 04): the loss on latents, sampling and decoding, the VAE link
checked on load, and `python -m diffedu sample mnist-ldm` (tiny random models in a
temporary data folder; tests/test_shipped_models.py checks the shipped ones)."""

import numpy as np
import pytest
import torch

from diffedu.__main__ import main
from diffedu.models.checkpoints import CheckpointError, save_checkpoint
from diffedu import zoo
from diffedu.zoo.mnist_ldm import latent_diffusion_loss_fn, vae_sha256
from diffedu.models.unet import UNet, UNetConfig
from diffedu.models.vae import VAE, VAEConfig
from diffedu.losses import DiffusionSettings
from diffedu.schedules import make_schedule

TINY_VAE = VAEConfig(channels=(8, 8), groups=2)
TINY_LATENT_UNET = UNetConfig(image_channels=4, image_size=7, base_channels=8, channel_mults=(1, 1), attention_heads=1, groups=2)


def _jitter(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture()
def tiny_ldm_dir(tmp_path, monkeypatch):
    torch.manual_seed(0)
    folder = tmp_path / "checkpoints"
    save_checkpoint(_jitter(VAE(TINY_VAE)), "mnist-vae", {"vae": TINY_VAE.to_dict(), "beta": 0.01, "scaling_factor": 0.8}, {}, folder)
    config = {"unet": TINY_LATENT_UNET.to_dict(), "diffusion": DiffusionSettings().to_dict(), "vae_sha256": vae_sha256(folder)}
    save_checkpoint(_jitter(UNet(TINY_LATENT_UNET)), "mnist-ldm", config, {}, folder)
    monkeypatch.setenv("DIFFEDU_DATA", str(tmp_path))
    return tmp_path


def test_loss_sees_scaled_latents():
    seen = {}

    def spy(x_t, t, labels):
        seen["x_t"] = x_t
        return torch.zeros_like(x_t)

    spy.null_class = 10
    schedule = make_schedule("cosine")
    mean = torch.full((64, 4, 7, 7), 5.0)
    log_var = torch.full_like(mean, -30.0)  # a (nearly) deterministic encoder
    loss_fn = latent_diffusion_loss_fn(schedule, DiffusionSettings(weighting="none"), scaling_factor=0.2)
    loss = loss_fn(spy, [mean, log_var, torch.zeros(64, dtype=torch.long)], torch.Generator().manual_seed(0))
    assert seen["x_t"].shape == (64, 4, 7, 7)
    assert abs(loss.item() - 1.0) < 0.05  # eps_theta = 0: the loss is E[eps^2] = 1
    # x_t = sqrt(alpha_bar) * (0.2 * 5) + sqrt(1 - alpha_bar) * eps has mean sqrt(alpha_bar) * 1, not * 5
    assert seen["x_t"].mean().item() < 1.0


def test_ldm_samples_decoded_images_reproducibly(tiny_ldm_dir):
    ldm = zoo.load("mnist-ldm")
    labels = torch.arange(6) % 10
    a = ldm.sample(6, steps=3, seed=2, labels=labels, guidance=2.0, progress=False)
    b = ldm.sample(6, steps=3, seed=2, labels=labels, guidance=2.0, batch_size=4, progress=False)
    assert a.shape == (6, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1


def test_ldm_refuses_another_vae(tiny_ldm_dir):
    folder = tiny_ldm_dir / "checkpoints"
    torch.manual_seed(1)
    save_checkpoint(_jitter(VAE(TINY_VAE)), "mnist-vae", {"vae": TINY_VAE.to_dict(), "beta": 0.01, "scaling_factor": 0.8}, {}, folder)
    with pytest.raises(CheckpointError, match="different mnist-vae"):
        zoo.load("mnist-ldm")


def test_cli_samples_mnist_ldm_like_mnist_unet(tiny_ldm_dir, tmp_path):
    args = ["sample", "mnist-ldm", "--n", "7", "--steps", "3", "--seed", "5", "--all-labels", "--guidance", "1.5"]
    assert main(args + ["--out", str(tmp_path / "a.npz")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.npz"), "--batch-size", "3"]) == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["images"].shape == (7, 28, 28) and a["images"].dtype == np.uint8
    assert a["labels"].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert np.array_equal(a["images"], b["images"])


def test_cli_without_vae_says_how_to_make_it(tiny_ldm_dir, tmp_path, capsys):
    (tiny_ldm_dir / "checkpoints" / "mnist-vae.safetensors").unlink()
    assert main(["sample", "mnist-ldm", "--out", str(tmp_path / "x.npz")]) == 1
    assert "python -m diffedu train mnist-vae" in capsys.readouterr().err
