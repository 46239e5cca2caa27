"""The VAE of chapter 04: shapes, the ELBO's terms against known answers, and that it learns."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffedu.course.data import load_mnist
from diffedu.latents import latent_scale_factor
from diffedu.zoo.mnist_vae import vae_loss_fn
from diffedu.models.vae import VAE, VAEConfig, kl_to_standard_normal, sample_posterior, vae_loss
from diffedu.train import TrainConfig, train

SMALL = VAEConfig(channels=(8, 16), groups=4)


def test_shapes_and_range():
    vae = VAE(SMALL)
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    mean, log_var = vae.encode(x)
    assert mean.shape == log_var.shape == (5, 4, 7, 7) == (5, *vae.latent_shape)
    images = vae.decode(mean)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1


def test_wrong_shapes_explain():
    vae = VAE(SMALL)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 1, 28, 28\)"):
        vae.encode(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"latents must have shape \(B, 4, 7, 7\)"):
        vae.decode(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        VAE(VAEConfig(image_size=30))


def test_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(3, 4, 7, 7, generator=gen), torch.randn(3, 4, 7, 7, generator=gen)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    assert torch.allclose(kl_to_standard_normal(mean, log_var), expected, rtol=1e-5)
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_reparameterisation_has_the_right_moments_and_gradients():
    mean = torch.full((200_000,), 1.5, requires_grad=True)
    log_var = torch.full((200_000,), math.log(0.25), requires_grad=True)
    z = sample_posterior(mean, log_var, torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 1.5) < 0.01 and abs(z.std().item() - 0.5) < 0.01
    z.sum().backward()
    assert torch.allclose(mean.grad, torch.ones_like(mean))  # dz/dmean = 1
    again = sample_posterior(mean.detach(), log_var.detach(), torch.Generator().manual_seed(0))
    assert torch.equal(z.detach(), again)  # the same generator, the same z


def test_loss_is_bce_plus_beta_kl():
    vae = VAE(SMALL)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    loss, parts = vae_loss(vae, x, torch.Generator().manual_seed(1), beta=0.3)
    logits, mean, log_var = vae(x, torch.Generator().manual_seed(1))
    bce = F.binary_cross_entropy(torch.sigmoid(logits), (x + 1) / 2, reduction="sum") / 4
    assert torch.allclose(parts["reconstruction"], bce, rtol=1e-4)
    assert torch.allclose(parts["kl"], kl_to_standard_normal(mean, log_var).mean(), rtol=1e-5)
    assert torch.allclose(loss, parts["reconstruction"] + 0.3 * parts["kl"], rtol=1e-5)


def test_a_short_training_run_improves_reconstructions():
    torch.manual_seed(0)
    images = load_mnist("train").images[:512]
    vae = VAE(SMALL)
    before = vae_loss(vae, images, torch.Generator().manual_seed(0), 0.01)[1]["reconstruction"].item()
    config = TrainConfig(train_steps=60, batch_size=64, lr=3e-3, warmup_steps=5)
    result = train(vae, vae_loss_fn(0.01), (images,), config, progress=False, device="cpu")
    after = vae_loss(result.model, images, torch.Generator().manual_seed(0), 0.01)[1]["reconstruction"].item()
    assert after < 0.7 * before, (before, after)


def test_latent_scale_factor_is_one_over_the_std():
    gen = torch.Generator().manual_seed(1)  # not seed 0: latent_scale_factor draws its eps from seed 0
    mean = 3.0 * torch.randn(4000, 4, 7, 7, generator=gen)
    log_var = torch.full_like(mean, math.log(16.0))  # posterior std 4: total std 5
    assert abs(latent_scale_factor(mean, log_var) - 1 / 5) < 0.002
