"""FID, accuracy and the classifier: known answers and a library reference (scipy)."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage.metrics import structural_similarity

from diffedu.metrics import MnistClassifier, accuracy, fid_from_features, frechet_distance, gaussian_fit, psnr, ssim


def _scipy_frechet(mu1, cov1, mu2, cov2):
    covmean = linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 16, generator=gen, dtype=torch.float64) @ torch.randn(16, 16, generator=gen, dtype=torch.float64)
    b = torch.randn(2000, 16, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    mu1, cov1 = gaussian_fit(a)
    mu2, cov2 = gaussian_fit(b)
    ours = frechet_distance(mu1, cov1, mu2, cov2)
    theirs = _scipy_frechet(mu1.numpy(), cov1.numpy(), mu2.numpy(), cov2.numpy())
    assert ours == pytest.approx(theirs, rel=1e-8)


def test_known_gaussians_have_closed_form_distance():
    """Isotropic case: FID(N(m1, s1^2 I), N(m2, s2^2 I)) = |m1 - m2|^2 + d (s1 - s2)^2."""
    d = 8
    value = frechet_distance(torch.zeros(d), torch.eye(d) * 4.0, torch.ones(d), torch.eye(d) * 1.0)
    assert value == pytest.approx(d * 1.0 + d * (2.0 - 1.0) ** 2, rel=1e-12)


def test_identical_sets_give_zero_and_rank_deficient_covariances_are_fine():
    features = torch.randn(50, 128, dtype=torch.float64)  # N < D: singular covariance
    # sqrt of rounding-level eigenvalues (~1e-15) adds ~3e-8 each: 1e-4 is 1e-6 of tr(S) = 128
    assert abs(fid_from_features(features, features)) < 1e-4
    assert fid_from_features(features, features + 1.0) == pytest.approx(128.0, rel=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match="need features of shape"):
        gaussian_fit(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="shapes do not fit"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError, match="MNIST-shaped images"):
        MnistClassifier().features(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="one label per image"):
        accuracy(MnistClassifier().eval(), torch.zeros(2, 1, 28, 28), torch.zeros(3, dtype=torch.long))


def test_psnr_known_values():
    a = torch.zeros(2, 1, 28, 28)
    b = a.clone()
    b[0] += 0.2  # 0.1 on the [0, 1] scale: MSE 0.01, 20 dB
    b[1, :, :14] += 0.2  # half the pixels: MSE 0.005
    values = psnr(b, a)
    assert torch.allclose(values, torch.tensor([20.0, 10 * math.log10(200)]), atol=1e-4)
    assert torch.isinf(psnr(a, a)).all()
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, a[:, :, :27])


def test_ssim_identical_noisy_and_library():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 1, 28, 28, generator=gen) * 2 - 1
    b = (a + 0.5 * torch.randn(3, 1, 28, 28, generator=gen)).clamp(-1, 1)
    assert torch.allclose(ssim(a, a), torch.ones(3))
    values = ssim(b, a)
    assert (values < 0.9).all()
    expected = structural_similarity(((b[1, 0] + 1) / 2).double().numpy(), ((a[1, 0] + 1) / 2).double().numpy(), data_range=1.0)
    assert abs(values[1].item() - expected) < 1e-6
    with pytest.raises(ValueError, match="single-channel"):
        ssim(torch.zeros(1, 3, 28, 28), torch.zeros(1, 3, 28, 28))
