"""Measuring samples: the MNIST classifier's accuracy on generated digits, and FID on its
features (chapters 03 and 06).

FID (Heusel et al. 2017) fits a Gaussian to the features of real and of generated images
and measures the Frechet distance between the two, eq. (3.6):

    FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr((S_r^{1/2} S_g S_r^{1/2})^{1/2})

Offline there is no Inception network, so the course uses the penultimate layer (128
features) of its own MNIST classifier: the numbers are comparable within the course, not
with published Inception FIDs.
"""

from __future__ import annotations

import time

import torch
from skimage.metrics import structural_similarity

from diffedu.course.data import load_mnist
from diffedu.models.checkpoints import read_checkpoint
from diffedu.models.classifier import MnistClassifier


def load_classifier(device: torch.device | str = "cpu", folder=None) -> MnistClassifier:
    """The course's shipped MNIST classifier (data/checkpoints/mnist-classifier, or the one in
    `folder`), in eval mode."""
    state, _, _ = read_checkpoint("mnist-classifier", folder)
    model = MnistClassifier()
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def _batched(fn, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return torch.cat([fn(images[i: i + batch_size]) for i in range(0, images.shape[0], batch_size)])


def classifier_features(classifier: MnistClassifier, images: torch.Tensor) -> torch.Tensor:
    """Features (N, 128) float64 of images (N, 1, 28, 28) in [-1, 1], in batches."""
    device = next(classifier.parameters()).device
    return _batched(lambda x: classifier.features(x.to(device)).double().cpu(), images)


def predict_labels(classifier: MnistClassifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's digit (N,) for images (N, 1, 28, 28) in [-1, 1]."""
    device = next(classifier.parameters()).device
    return _batched(lambda x: classifier(x.to(device)).argmax(1).cpu(), images)


def class_probabilities(classifier: MnistClassifier, images: torch.Tensor) -> torch.Tensor:
    """p(y | x): the classifier's softmax (N, 10) float64 for images (N, 1, 28, 28) in [-1, 1]
    (what `inception_score_from_probs` takes)."""
    device = next(classifier.parameters()).device
    return _batched(lambda x: classifier(x.to(device)).double().softmax(1).cpu(), images)


def accuracy(classifier: MnistClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images the classifier labels as `labels` (for samples: the intended digit)."""
    if labels.shape != (images.shape[0],):
        raise ValueError(f"need one label per image: images {tuple(images.shape)}, labels {tuple(labels.shape)}")
    return (predict_labels(classifier, images) == labels.cpu()).double().mean().item()


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition
    (tiny negative eigenvalues from rounding are clipped to 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """Frechet distance between N(mu1, cov1) and N(mu2, cov2), eq. (3.6), in float64.

    tr((S1^{1/2} S2 S1^{1/2})^{1/2}) is computed from the eigenvalues of the symmetric PSD
    matrix S1^{1/2} S2 S1^{1/2}: stable, and never complex (unlike a general sqrtm of S1 S2).
    """
    mu1, mu2, cov1, cov2 = (x.double() for x in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shapes do not fit: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}, cov {tuple(cov1.shape)}, {tuple(cov2.shape)}")
    root1 = _sqrtm_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * trace_sqrt).item()


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), float64."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(features.shape)}")
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def fid_from_features(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between two sets of features (N, D) and (M, D), eq. (3.6) = (6.1)."""
    return frechet_distance(*gaussian_fit(features_a), *gaussian_fit(features_b))


def fid(classifier: MnistClassifier, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """FID between two image sets (N, 1, 28, 28) in [-1, 1] on the classifier's features."""
    return fid_from_features(classifier_features(classifier, images_a), classifier_features(classifier, images_b))


# Beyond FID (chapter 06): an unbiased distance, a score of the samples alone, and quality
# separated from diversity. Each works on features (N, D) or class probabilities (N, K).


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x . y / D + 1)^3, the kernel of KID (Binkowski et al. 2018), (N, M)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """The unbiased estimate of the squared maximum mean discrepancy with the KID kernel, eq. (6.3):
    mean of k(a, a') over pairs a != a', plus the same for b, minus 2 mean k(a, b).
    Its expectation is 0 when both sets come from the same distribution (it can go below 0)."""
    a, b = features_a.double(), features_b.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"need features (N >= 2, D) and (M >= 2, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    n, m = a.shape[0], b.shape[0]
    k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return (within_a + within_b - 2 * k_ab.mean()).item()


def standardise_features(features_a: torch.Tensor, features_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both feature sets (N, D) and (M, D), shifted and scaled per feature by the mean and standard deviation
    of the two sets together, float64: every feature of order 1, as KID's kernel assumes. A feature that is
    constant over both sets (a ReLU that never fires) is only shifted."""
    a, b = features_a.double(), features_b.double()
    both = torch.cat([a, b])
    mean, std = both.mean(0), both.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (a - mean) / std, (b - mean) / std


def kid_from_features(features_a: torch.Tensor, features_b: torch.Tensor, subset_size: int = 1000,
                      num_subsets: int = 10, seed: int = 0, standardise: bool = True) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): mean and standard deviation of `mmd2_unbiased` over
    random subsets of `subset_size` from each set (all of a set if it is smaller). Unbiased, unlike FID.

    The kernel (x . y / D + 1)^3 assumes features of order 1 (Inception's pool features are). The course's
    classifier features have norms of 20 to 30, where the cube blows every value up by orders of magnitude
    and the noise with it; so by default both sets are first standardised together (`standardise_features`).
    The result is the same for features scaled by any factor."""
    if standardise:
        features_a, features_b = standardise_features(features_a, features_b)
    generator = torch.Generator().manual_seed(seed)
    size = min(subset_size, features_a.shape[0], features_b.shape[0])
    values = []
    for _ in range(num_subsets):
        pick_a = torch.randperm(features_a.shape[0], generator=generator)[:size]
        pick_b = torch.randperm(features_b.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(features_a[pick_a], features_b[pick_b]))
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), (values.std().item() if num_subsets > 1 else 0.0)


def inception_score_from_probs(probs: torch.Tensor) -> float:
    """exp(mean over x of KL(p(y | x) || p(y))) with p(y) the mean of p(y | x), eq. (6.4) (Salimans et al.
    2016): from 1 (every sample the same blur of classes) to K (confident, all K classes equally)."""
    rows_sum_to_one = probs.ndim == 2 and torch.allclose(probs.sum(1), torch.ones(probs.shape[0], dtype=probs.dtype), atol=1e-4)
    if probs.ndim != 2 or probs.shape[0] < 1 or (probs < 0).any() or not rows_sum_to_one:
        raise ValueError(f"need class probabilities (N, K) with rows summing to 1, got shape {tuple(probs.shape)}: "
                         "apply softmax to logits first")
    probs = probs.double()
    marginal = probs.mean(0, keepdim=True)  # p(y), (1, K)
    kl = (probs * (probs.clamp(min=1e-12).log() - marginal.clamp(min=1e-12).log())).sum(1)  # (N,)
    return kl.mean().exp().item()


def precision_recall(real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall, eq. (6.5) (Kynkaanniemi et al. 2019). Around each real point draw a
    ball reaching its k-th nearest real neighbour; precision is the share of fake points inside
    some real ball (quality). Recall swaps the roles (diversity: how much of the real data the
    samples cover)."""
    real, fake = real_features.double(), fake_features.double()
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1] or min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"need features (N > k, D) and (M > k, D) with k = {k}, got {tuple(real.shape)} and {tuple(fake.shape)}")

    def coverage(support: torch.Tensor, queries: torch.Tensor) -> float:
        radii = torch.cdist(support, support).kthvalue(k + 1, dim=1).values  # k-th neighbour (0th is the point itself)
        inside = torch.cdist(queries, support) <= radii[None, :]  # (Q, S)
        return inside.any(1).double().mean().item()

    return coverage(real, fake), coverage(fake, real)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between noise tensors a and b (B, ...), per sample, at t (a float,
    or one value per sample (B,)): the path stays at the typical norm of Gaussian noise, where
    a straight line would dip towards 0."""
    a_flat, b_flat = a.flatten(1), b.flatten(1)  # (B, D)
    t = torch.as_tensor(t, dtype=a_flat.dtype).reshape(-1, 1)  # (1, 1) or (B, 1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1))
    angle = cos.clamp(-1, 1).acos()[:, None]  # (B, 1)
    mixed = (torch.sin((1 - t) * angle) * a_flat + torch.sin(t * angle) * b_flat) / torch.sin(angle)
    return mixed.reshape(a.shape)


def perceptual_path_length(generate, features, noise_shape: tuple[int, ...], n: int = 200, epsilon: float = 1e-2,
                           seed: int = 0) -> float:
    """Perceptual path length, eq. (6.6) (Karras et al. 2019), of a deterministic generator, e.g. DDIM from
    its starting noise: for random pairs of noises and a random t for each pair, the squared feature distance
    between generate(slerp(t)) and generate(slerp(t + epsilon)), divided by epsilon^2, averaged.
    Small means that a small move of the noise changes the picture a little: a smooth latent space.

    Args:
        generate: noise (B, *noise_shape) -> images; must be deterministic.
        features: images -> (B, D) features (the classifier's, for MNIST).
    """
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(n, *noise_shape, generator=generator)
    end = torch.randn(n, *noise_shape, generator=generator)
    t = torch.rand(n, generator=generator) * (1 - epsilon)  # (n,) a point on each path
    near = features(generate(slerp(start, end, t))).double()
    far = features(generate(slerp(start, end, t + epsilon))).double()
    return ((far - near).square().sum(1) / epsilon**2).mean().item()


# Reconstruction metrics (chapter 04): how close is a reconstruction to its original?


def _check_pair(images_a: torch.Tensor, images_b: torch.Tensor) -> None:
    if images_a.shape != images_b.shape or images_a.ndim != 4:
        raise ValueError(
            f"need two image batches of the same shape (B, C, H, W), got {tuple(images_a.shape)} and {tuple(images_b.shape)}"
        )


def psnr(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image (B,) in dB, eq. (4.6): 10 log10(1 / MSE), with
    both batches (B, C, H, W) in [-1, 1] mapped to [0, 1] (peak value 1). Identical images
    give +inf."""
    _check_pair(images_a, images_b)
    mse = ((images_a.double() - images_b.double()) / 2).square().flatten(1).mean(1)  # (B,), on [0, 1]
    return (10 * torch.log10(1 / mse)).float()


def ssim(images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (B,), eq. (4.7) (Wang et al. 2004), computed by
    scikit-image's `structural_similarity` (7 x 7 windows, data range 1) on single-channel
    images (B, 1, H, W) in [-1, 1] mapped to [0, 1]. 1 means identical."""
    _check_pair(images_a, images_b)
    if images_a.shape[1] != 1:
        raise ValueError(f"ssim expects single-channel images (B, 1, H, W), got {tuple(images_a.shape)}")
    a = ((images_a[:, 0].detach().double() + 1) / 2).cpu().numpy()
    b = ((images_b[:, 0].detach().double() + 1) / 2).cpu().numpy()
    return torch.tensor([structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)], dtype=torch.float32)


def evaluate_samples(draw, n: int = 1000, seed: int = 0, steps: int = 50, guidances: tuple[float, ...] = (1.0, 1.5, 2.0),
                     sampler: str | None = None) -> dict:
    """FID (classifier features, vs the first n MNIST test digits), conditional accuracy and
    sampling time for each guidance scale, and the real-vs-real FID of the next n test digits.

    draw(n, labels, guidance, steps, seed) -> images (n, 1, 28, 28) in [-1, 1]; `sampler` names
    what draw does, for the record (default: "ddim{steps} trailing").
    """
    classifier = load_classifier()
    test_images = load_mnist("test").images
    labels = torch.arange(n) % 10
    results = {"n": n, "sampler": sampler or f"ddim{steps} trailing", "seed": seed,
               "fid_real_vs_real": round(fid(classifier, test_images[:n], test_images[n: 2 * n]), 3)}
    for guidance in guidances:
        start = time.perf_counter()
        images = draw(n, labels, guidance, steps, seed)
        results[f"guidance_{guidance}"] = {
            "seconds": round(time.perf_counter() - start, 1),
            "accuracy": round(accuracy(classifier, images, labels), 4),
            "fid": round(fid(classifier, images, test_images[:n]), 3),
        }
    return results


def restoration_metrics(restored: torch.Tensor, originals: torch.Tensor, labels: torch.Tensor | None = None,
                        reference: torch.Tensor | None = None, classifier: MnistClassifier | None = None,
                        reference_features: torch.Tensor | None = None) -> dict:
    """How well restored digits (B, 1, 28, 28) match the originals they were observed from (chapter 10):
    mean PSNR (4.6) and SSIM (4.7) against the originals; with labels, the classifier's accuracy on
    the restored digits; with reference digits (other real digits, not the originals), FID against them.
    Many measurements against one reference can pass its classifier_features once, as reference_features."""
    _check_pair(restored, originals)
    if reference is not None and reference_features is not None:
        raise ValueError("give the reference digits or their features (reference_features), not both")
    metrics = {"psnr": round(psnr(restored, originals).mean().item(), 2),
               "ssim": round(ssim(restored, originals).mean().item(), 4)}
    if labels is not None or reference is not None or reference_features is not None:
        classifier = classifier or load_classifier()
    if labels is not None:
        metrics["accuracy"] = round(accuracy(classifier, restored, labels), 4)
    if reference is not None:
        reference_features = classifier_features(classifier, reference)
    if reference_features is not None:
        metrics["fid"] = round(fid_from_features(classifier_features(classifier, restored), reference_features), 2)
    return metrics
