"""FID, accuracy and the classifier: known answers and a library reference (scipy)."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage.metrics import structural_similarity

from diffedu.models.classifier import MnistClassifier
from diffedu.metrics import (
    accuracy, fid_from_features, frechet_distance, gaussian_fit, inception_score_from_probs, kid_from_features,
    mmd2_unbiased, perceptual_path_length, precision_recall, psnr, slerp, ssim, standardise_features,
)


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


# ---- chapter 06's metrics: KID, Inception Score, precision and recall ----


def test_mmd2_matches_its_definition_and_is_unbiased():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 3, generator=gen), torch.randn(4, 3, generator=gen) + 1
    kernel = lambda x, y: (x @ y / 3 + 1) ** 3  # noqa: E731
    within_a = sum(kernel(a[i], a[j]) for i in range(5) for j in range(5) if i != j) / 20
    within_b = sum(kernel(b[i], b[j]) for i in range(4) for j in range(4) if i != j) / 12
    across = sum(kernel(a[i], b[j]) for i in range(5) for j in range(4)) / 20
    assert math.isclose(mmd2_unbiased(a, b), (within_a + within_b - 2 * across).item(), rel_tol=1e-6)
    # same distribution: the average over many draws is 0 (a biased estimator would stay positive)
    draws = [mmd2_unbiased(torch.randn(50, 8, generator=gen), torch.randn(50, 8, generator=gen)) for _ in range(200)]
    assert abs(sum(draws) / len(draws)) < 3 * torch.tensor(draws).std().item() / math.sqrt(len(draws))


def test_kid_grows_with_a_shift_and_is_near_zero_for_one_distribution():
    gen = torch.Generator().manual_seed(1)
    real = torch.randn(600, 16, generator=gen)
    same, _ = kid_from_features(real, torch.randn(600, 16, generator=gen), subset_size=300)
    small, _ = kid_from_features(real, torch.randn(600, 16, generator=gen) + 0.3, subset_size=300)
    large, _ = kid_from_features(real, torch.randn(600, 16, generator=gen) + 1.0, subset_size=300)
    assert abs(same) < small < large


def _relu_features(n: int, shift: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Features like the classifier's: ReLU outputs (n, 64) with norms of about 25, one feature never firing."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.relu(3 * torch.randn(n, 64, generator=gen, dtype=torch.float64) + 1 + shift)
    features[:, 0] = 0  # a dead ReLU: zero variance
    return features


def test_kid_standardises_features_of_any_scale():
    """KID's kernel (x.y/D + 1)^3 assumes features of order 1; on features of norm ~25 the raw estimate's spread
    is orders of magnitude larger. Standardised, KID does not depend on the features' scale."""
    real, other = _relu_features(800, seed=1), _relu_features(800, seed=2)
    assert 15 < real.norm(dim=1).mean() < 40
    raw_std = kid_from_features(real, other, subset_size=400, num_subsets=20, standardise=False)[1]
    kid, spread = kid_from_features(real, other, subset_size=400, num_subsets=20)
    assert spread < raw_std / 30
    assert math.isclose(kid_from_features(25 * real, 25 * other, subset_size=400, num_subsets=20)[0], kid, rel_tol=1e-9, abs_tol=1e-12)
    assert math.isfinite(kid) and abs(kid) < 3 * spread  # one distribution: within its noise of 0


def test_kid_separates_a_shift_from_its_noise():
    real = _relu_features(800, seed=1)
    same_mean, same_std = kid_from_features(real, _relu_features(800, seed=2), subset_size=400, num_subsets=20)
    shifted, _ = kid_from_features(real, _relu_features(800, shift=1.0, seed=3), subset_size=400, num_subsets=20)
    assert shifted > same_mean + 5 * same_std


def test_standardise_features_shares_one_scale_and_keeps_dead_features_finite():
    a, b = standardise_features(_relu_features(100, seed=1), _relu_features(50, shift=1.0, seed=2))
    both = torch.cat([a, b])
    assert torch.isfinite(both).all() and torch.allclose(both[:, 0], torch.zeros(150, dtype=torch.float64))
    assert torch.allclose(both[:, 1:].mean(0), torch.zeros(63, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(both[:, 1:].std(0), torch.ones(63, dtype=torch.float64))
    assert b[:, 1:].mean() > a[:, 1:].mean()  # the shift survives: one scale for both sets


def test_inception_score_known_values():
    assert math.isclose(inception_score_from_probs(torch.full((8, 10), 0.1)), 1.0)  # no sample is sure: 1
    assert math.isclose(inception_score_from_probs(torch.eye(10).repeat(3, 1)), 10.0, rel_tol=1e-6)  # sure and balanced: K
    assert math.isclose(inception_score_from_probs(torch.eye(10)[[3] * 20]), 1.0, rel_tol=1e-6)  # sure but collapsed: 1
    with pytest.raises(ValueError, match="softmax"):
        inception_score_from_probs(torch.randn(4, 10))


def test_precision_and_recall_separate_quality_from_diversity():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(400, 2, generator=gen)
    precision, recall = precision_recall(real, torch.randn(400, 2, generator=gen))
    assert precision > 0.8 and recall > 0.8  # the same distribution
    collapsed = real[:5].repeat(80, 1) + 0.01 * torch.randn(400, 2, generator=gen)  # mode collapse: five real points, copied
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2  # good-looking samples, little diversity
    precision, recall = precision_recall(real, torch.randn(400, 2, generator=gen) + 10)
    assert precision == 0 and recall == 0  # nowhere near the data
    with pytest.raises(ValueError, match="k = 3"):
        precision_recall(real, real[:3])


def test_slerp_keeps_the_norm_and_hits_both_ends():
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 1, 8, 8, generator=gen), torch.randn(4, 1, 8, 8, generator=gen)
    b = b / b.flatten(1).norm(dim=1)[:, None, None, None] * a.flatten(1).norm(dim=1)[:, None, None, None]  # equal norms
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(slerp(a, b, 0.3).flatten(1).norm(dim=1), a.flatten(1).norm(dim=1), rtol=1e-4)
    per_sample = slerp(a, b, torch.tensor([0.0, 0.3, 0.3, 1.0]))  # one t per sample
    assert torch.allclose(per_sample[0], a[0], atol=1e-5) and torch.allclose(per_sample[3], b[3], atol=1e-5)
    assert torch.allclose(per_sample[1:3], slerp(a, b, 0.3)[1:3])


def test_perceptual_path_length_of_a_linear_generator_is_known():
    """generate(z) = 2 z with identity features: for equal-norm ends the slerp path has speed
    theta |z|, so PPL -> 4 mean(theta^2 |z|^2) as epsilon -> 0; for general ends, compare with
    the same finite difference done by hand, one t per pair."""
    gen = torch.Generator().manual_seed(0)
    start, end = torch.randn(50, 6, generator=gen), torch.randn(50, 6, generator=gen)
    t = torch.rand(50, generator=gen) * (1 - 1e-3)
    expected = ((2 * slerp(start, end, t + 1e-3) - 2 * slerp(start, end, t)).square().sum(1) / 1e-6).mean().item()
    assert math.isclose(perceptual_path_length(lambda z: 2 * z, lambda x: x, (6,), n=50, epsilon=1e-3), expected, rel_tol=1e-5)

    # the exact derivative of the slerp path: d/dt [sin((1-t) theta) a + sin(t theta) b] / sin(theta)
    gen = torch.Generator().manual_seed(0)  # the draws perceptual_path_length makes with seed 0
    a, b = torch.randn(400, 6, generator=gen).double(), torch.randn(400, 6, generator=gen).double()
    t = (torch.rand(400, generator=gen) * (1 - 1e-4)).double()[:, None]
    theta = ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).acos()[:, None]
    velocity = theta * (-torch.cos((1 - t) * theta) * a + torch.cos(t * theta) * b) / torch.sin(theta)  # (400, 6)
    closed_form = (4 * velocity.square().sum(1)).mean().item()
    measured = perceptual_path_length(lambda z: 2 * z, lambda x: x, (6,), n=400, epsilon=1e-4)
    assert math.isclose(measured, closed_form, rel_tol=1e-2)
    smooth = perceptual_path_length(lambda z: z, lambda x: x, (6,), n=50)
    rough = perceptual_path_length(lambda z: torch.sin(20 * z), lambda x: x, (6,), n=50)
    assert rough > 10 * smooth  # a wiggly generator has a long path
