"""A 2-D Gaussian mixture whose noised densities, scores and posterior means are exact.

Under the forward process (eq. 1.5) a mixture of isotropic Gaussians stays a mixture:
component k with mean mu_k and std s_k becomes N(sqrt(alpha_bar) mu_k, (alpha_bar s_k^2 +
1 - alpha_bar) I). So the score, the ideal noise predictor and E[x_0 | x_t] are closed forms
(chapter 02), which lets us test samplers with a perfect "model". Observed through a linear A with
Gaussian noise, it has an exact posterior too (`observation_posterior`, chapter 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from diffedu.course.checks import check_finite, check_tensor, check_timesteps
from diffedu.schedules import NoiseSchedule


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights[k] N(means[k], stds[k]^2 I) in two dimensions (float64 inside)."""

    weights: torch.Tensor  # (K,) sums to 1
    means: torch.Tensor  # (K, 2)
    stds: torch.Tensor  # (K,)

    def __post_init__(self) -> None:
        k = self.weights.shape[0]
        if self.weights.ndim != 1 or self.means.shape != (k, 2) or self.stds.shape != (k,):
            raise ValueError(
                f"expected weights (K,), means (K, 2), stds (K,), got {tuple(self.weights.shape)}, "
                f"{tuple(self.means.shape)}, {tuple(self.stds.shape)}"
            )
        if (self.weights < 0).any() or not math.isclose(self.weights.sum().item(), 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must be non-negative and sum to 1, got {self.weights.tolist()}")
        if (self.stds <= 0).any():
            raise ValueError(f"stds must be positive, got {self.stds.tolist()}")

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n points (n, 2) float32 and the component each came from (n,) int64."""
        components = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        points = self.means[components] + self.stds[components, None] * noise
        return points.float(), components

    def noised(self, alpha_bar: float) -> "GaussianMixture":
        """The marginal q(x_t) when x_0 follows this mixture: each component scaled by
        sqrt(alpha_bar) with variance alpha_bar s^2 + (1 - alpha_bar)."""
        if not 0 < alpha_bar <= 1:
            raise ValueError(f"alpha_bar must be in (0, 1], got {alpha_bar}")
        stds = (alpha_bar * self.stds**2 + (1 - alpha_bar)).sqrt()
        return GaussianMixture(self.weights, math.sqrt(alpha_bar) * self.means, stds)

    def _log_component_densities(self, x: torch.Tensor) -> torch.Tensor:
        """log(w_k N(x; mu_k, s_k^2 I)) for every point and component, (n, K) float64."""
        check_finite("x", check_tensor("x", x))
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"x must be a batch of 2-D points (n, 2), got {tuple(x.shape)}")
        x = x.double()
        sq_dist = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)  # (n, K)
        var = self.stds**2
        return self.weights.log() - sq_dist / (2 * var) - torch.log(2 * math.pi * var)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), (n,) float64."""
        return torch.logsumexp(self._log_component_densities(x), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """p(component k | x), (n, K) float64."""
        return torch.softmax(self._log_component_densities(x), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x) = sum_k p(k | x) (mu_k - x) / s_k^2, (n, 2) float64."""
        r = self.responsibilities(x)  # (n, K)
        pull = (self.means[None] - x.double()[:, None, :]) / (self.stds**2)[None, :, None]  # (n, K, 2)
        return (r[..., None] * pull).sum(1)


def make_toy_mixture() -> GaussianMixture:
    """The course's standard toy: three well-separated blobs with unequal weights."""
    return GaussianMixture(
        weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
        means=torch.tensor([[-1.0, -0.5], [1.0, -0.5], [0.0, 1.0]], dtype=torch.float64),
        stds=torch.tensor([0.15, 0.15, 0.15], dtype=torch.float64),
    )


def exact_noise_predictor(mixture: GaussianMixture, schedule: NoiseSchedule):
    """The best possible eps_theta for this mixture: eps*(x_t, t) = -sqrt(1 - alpha_bar_t) *
    score of q(x_t), eq. (2.10). Returns a callable model(x_t, t) -> eps (float32)."""

    def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = check_timesteps(t, schedule.num_train_timesteps, batch_size=x_t.shape[0])
        eps = torch.empty(x_t.shape, dtype=torch.float64)
        x_cpu = x_t.cpu()  # not detached: DPS (chapter 10) differentiates through this model
        t_cpu = t.cpu().expand(x_t.shape[0])
        for step in t_cpu.unique().tolist():  # one noised mixture per distinct timestep
            alpha_bar = schedule.alpha_bar[step].double().item()
            rows = t_cpu == step
            eps[rows] = -math.sqrt(1 - alpha_bar) * mixture.noised(alpha_bar).score(x_cpu[rows])
        return eps.to(device=x_t.device, dtype=x_t.dtype)

    return model


def exact_velocity(mixture: GaussianMixture, x: torch.Tensor, t: float) -> torch.Tensor:
    """The marginal velocity of the straight path (8.1) for this mixture, eq. (8.4):
    v*(x, t) = E[eps - x_0 | x_t = x], exactly, (n, 2) float64, for 0 <= t <= 1.

    Within component k, x_t = (1 - t) x_0 + t eps is Gaussian with mean (1 - t) mu_k and variance
    c_k = (1 - t)^2 s_k^2 + t^2; x_0 and eps given x_t follow from Gaussian conditioning, and the
    components are weighted by their responsibility for x at time t.
    """
    if not 0 <= t <= 1:
        raise ValueError(f"t must be in [0, 1], got {t}")
    variance = (1 - t) ** 2 * mixture.stds**2 + t**2  # (K,)
    at_time_t = GaussianMixture(mixture.weights, (1 - t) * mixture.means, variance.sqrt())
    responsibility = at_time_t.responsibilities(x)  # (n, K)
    offset = x.double()[:, None, :] - (1 - t) * mixture.means[None]  # (n, K, 2)
    x0_mean = mixture.means[None] + ((1 - t) * mixture.stds**2 / variance)[None, :, None] * offset
    eps_mean = (t / variance)[None, :, None] * offset
    return (responsibility[..., None] * (eps_mean - x0_mean)).sum(1)


def exact_posterior_mean(mixture: GaussianMixture, x_t: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """E[x_0 | x_t] by Tweedie's formula: (x_t + (1 - alpha_bar) score(x_t)) / sqrt(alpha_bar),
    eq. (2.11). (n, 2) float64."""
    score = mixture.noised(alpha_bar).score(x_t)
    return (x_t.double() + (1 - alpha_bar) * score) / math.sqrt(alpha_bar)


@dataclass
class ComponentSummary:
    """Per-component statistics of samples, to compare with the mixture that should have
    produced them (see `component_summary`)."""

    weights: torch.Tensor  # (K,) fraction of the samples nearest each component
    means: torch.Tensor  # (K, 2) mean of those samples (NaN for a component no sample is near)
    stds: torch.Tensor  # (K,) their spread per coordinate: sqrt(mean ||x - mean_k||^2 / 2)
    far_fraction: float  # fraction of samples more than `far` stds from every component mean


def component_summary(mixture: GaussianMixture, samples: torch.Tensor, far: float = 4.0) -> ComponentSummary:
    """How well samples recover a mixture: assign each point to its nearest component and
    measure the share, mean and spread of each group (chapter 02).

    "Nearest" counts distance in that component's stds, ||x - mu_k|| / s_k. For true
    mixture data, the share of points more than r stds from their own component's mean is
    exp(-r^2 / 2) in 2-D (the distance is chi-distributed with 2 degrees of freedom), so
    `far_fraction` is about exp(-8) = 3.4e-4 for r = 4: points there sit between modes.

    Args:
        mixture: the mixture the samples should follow.
        samples: (n, 2) points, e.g. a sampler's output.
        far: distance, in stds, beyond which a point counts as far from every mode.
    Returns:
        a ComponentSummary with float64 tensors.
    """
    check_finite("samples", check_tensor("samples", samples))
    if samples.ndim != 2 or samples.shape[1] != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty batch of 2-D points (n, 2), got {tuple(samples.shape)}")
    x = samples.detach().cpu().double()
    distance = (x[:, None, :] - mixture.means[None]).norm(dim=-1) / mixture.stds[None]  # (n, K) in stds
    nearest_distance, nearest = distance.min(dim=1)
    k = mixture.num_components
    counts = torch.bincount(nearest, minlength=k).double()  # (K,)
    sums = torch.zeros(k, 2, dtype=torch.float64).index_add_(0, nearest, x)
    means = sums / counts[:, None]  # 0 / 0 = NaN for an empty component
    sq_dev = ((x - means[nearest]) ** 2).sum(1)  # (n,)
    stds = (torch.zeros(k, dtype=torch.float64).index_add_(0, nearest, sq_dev) / (2 * counts)).sqrt()
    return ComponentSummary(
        weights=counts / x.shape[0],
        means=means,
        stds=stds,
        far_fraction=(nearest_distance > far).double().mean().item(),
    )


@dataclass(frozen=True)
class PosteriorMixture:
    """sum_k weights[k] N(means[k], covariances[k]) in two dimensions (float64): what an observation
    leaves of the mixture's prior (chapter 10). Unlike the prior, the components need not be round."""

    weights: torch.Tensor  # (K,)
    means: torch.Tensor  # (K, 2)
    covariances: torch.Tensor  # (K, 2, 2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n points (n, 2) float32 and the component each came from (n,) int64."""
        components = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        factors = torch.linalg.cholesky(self.covariances)  # (K, 2, 2), L L^T = covariance
        points = self.means[components] + (factors[components] @ noise[..., None]).squeeze(-1)
        return points.float(), components


def observation_posterior(mixture: GaussianMixture, matrix: torch.Tensor, y: torch.Tensor, noise_std: float) -> PosteriorMixture:
    """p(x_0 | y) for one observation y = A x_0 + sigma_y n (A = matrix (m, 2), y (m,), sigma_y =
    noise_std > 0), eq. (10.2), when x_0 follows `mixture`. Bayes' rule inside each component
    (a Gaussian prior times a linear Gaussian likelihood) gives a Gaussian, eq. (10.3):

        C_k = (I / s_k^2 + A^T A / sigma_y^2)^-1,   m_k = C_k (mu_k / s_k^2 + A^T y / sigma_y^2)
        w'_k  proportional to  w_k N(y; A mu_k, sigma_y^2 I + s_k^2 A A^T)

    For a noiseless observation take a small sigma_y (float64 keeps 1e-3 exact enough)."""
    if noise_std <= 0:
        raise ValueError(f"noise_std must be > 0 (use a small value such as 1e-3 for a noiseless A), got {noise_std}")
    matrix, y = matrix.double(), y.double().reshape(-1)
    if matrix.ndim != 2 or matrix.shape[1] != 2 or y.shape[0] != matrix.shape[0]:
        raise ValueError(f"expected matrix (m, 2) and y (m,), got {tuple(matrix.shape)} and {tuple(y.shape)}")
    eye = torch.eye(2, dtype=torch.float64)
    variances = mixture.stds**2  # (K,)
    precisions = eye / variances[:, None, None] + matrix.T @ matrix / noise_std**2  # (K, 2, 2)
    covariances = torch.linalg.inv(precisions)
    pulls = mixture.means / variances[:, None] + matrix.T @ y / noise_std**2  # (K, 2)
    means = (covariances @ pulls[..., None]).squeeze(-1)
    evidence_cov = noise_std**2 * torch.eye(len(y), dtype=torch.float64) + variances[:, None, None] * (matrix @ matrix.T)  # (K, m, m)
    evidence = torch.distributions.MultivariateNormal(mixture.means @ matrix.T, covariance_matrix=evidence_cov)
    weights = torch.softmax(mixture.weights.log() + evidence.log_prob(y), dim=0)
    return PosteriorMixture(weights, means, covariances)
