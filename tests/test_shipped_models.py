"""The checkpoints in data/checkpoints: present, small, documented, and as good as their cards say."""

import json

import pytest
import torch

from diffedu.checkpoints import CheckpointError, checkpoint_paths, read_checkpoint
from diffedu.data import load_mnist
from diffedu.latent_recipes import load_mnist_ldm, load_mnist_vae, reconstruction_metrics
from diffedu.metrics import accuracy, load_classifier
from diffedu.recipes import load_mnist_unet, sample_unet

CARD_FIELDS = ("command", "train_config", "steps", "wall_time_minutes", "hardware", "metrics", "model_config", "trained_on")


@pytest.mark.parametrize("name", ["mnist-classifier", "mnist-unet", "mnist-vae", "mnist-ldm"])
def test_checkpoint_is_small_and_has_a_model_card(name):
    weights, card_path = checkpoint_paths(name)
    assert weights.is_file() and card_path.is_file()
    assert weights.stat().st_size < 10_000_000  # data/ ships with every clone
    card = json.loads(card_path.read_text())
    for field in CARD_FIELDS:
        assert field in card, f"model card of {name} lacks {field}"
    assert card["command"] == f"python -m diffedu train {name}"
    assert card["weights_bytes"] == weights.stat().st_size


def test_classifier_reaches_99_percent_on_the_test_set():
    test = load_mnist("test")
    assert accuracy(load_classifier(), test.images, test.labels) >= 0.99


def test_unet_loads_and_samples_reproducibly():
    model, schedule, card = load_mnist_unet()
    labels = torch.arange(4)
    a = sample_unet(model, schedule, 4, "ddim", 5, seed=1, labels=labels, guidance=2.0, progress=False)
    b = sample_unet(model, schedule, 4, "ddim", 5, seed=1, labels=labels, guidance=2.0, progress=False)
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    x_init = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))  # the noise seed 1 draws
    c = sample_unet(model, schedule, 4, "ddim", 5, seed=99, labels=labels, guidance=2.0, progress=False, x_init=x_init)
    assert torch.equal(a, c)  # given x_T, DDIM is deterministic: the seed no longer matters
    with pytest.raises(ValueError, match="x_init must have shape"):
        sample_unet(model, schedule, 4, "ddim", 5, labels=labels, progress=False, x_init=x_init[:2])


def test_vae_meets_the_reconstruction_targets_on_test_digits():
    vae, scaling_factor, card = load_mnist_vae()
    metrics = reconstruction_metrics(vae, load_mnist("test").images[:1000])
    assert metrics["psnr_db"] >= 20 and metrics["ssim"] >= 0.85  # chapter 04's targets
    assert abs(metrics["psnr_db"] - card["metrics"]["psnr_db"]) < 1.5  # the card's whole-test-set figure
    assert 0.5 < scaling_factor < 2  # eq. (4.8) for a beta = 0.01 VAE: latents of std near 1


def test_latent_model_loads_and_draws_the_digits_it_is_asked_for():
    ldm, card = load_mnist_ldm()
    labels = torch.arange(20) % 10
    a = ldm.sample(20, steps=10, seed=1, labels=labels, guidance=2.0, progress=False)
    b = ldm.sample(20, steps=10, seed=1, labels=labels, guidance=2.0, progress=False)
    assert a.shape == (20, 1, 28, 28) and torch.equal(a, b)
    assert accuracy(load_classifier(), a, labels) >= 0.8  # the card: 1,000 samples, DDIM 50


def test_unknown_checkpoint_explains(tmp_path):
    with pytest.raises(CheckpointError, match="python -m diffedu train nothing"):
        read_checkpoint("nothing", tmp_path)
