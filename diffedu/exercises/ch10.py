"""Exercises of chapter 10 (restoration and editing). See diffedu/exercises/__init__.py for how
checkers work.

10.1 builds an operator and its pseudo-inverse (subsampling); 10.2 derives the posterior of a
Gaussian prior under a noisy observation, (10.2) in closed form; 10.3 derives DPS's gradient (10.5)
by hand for a network simple enough to differentiate on paper.
"""

from __future__ import annotations

import torch

from diffedu.exercises import ExerciseError, exercise, expect_close, expect_number, expect_tensor, reject_known_mistakes


# --- 10.1 ------------------------------------------------------------------------------------------

def _images(seed: int, shape=(3, 1, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@exercise("10.1")
def check_subsample(subsample, subsample_pinv) -> None:
    """Exercise 10.1: A keeps the top-left pixel of every 2 x 2 block, (B, C, H, W) -> (B, C, H/2, W/2);
    A^+ must be its pseudo-inverse: A A^+ = I and A^+ A an orthogonal projection."""
    x, z = _images(0), _images(1)
    y = expect_tensor(subsample(x), (3, 1, 4, 4), "subsample(x) for x (3, 1, 8, 8)")
    if not torch.equal(y, x[..., ::2, ::2]):
        reject_known_mistakes(y, [(torch.nn.functional.avg_pool2d(x, 2), "that is the block mean (Downsample(2)): keep "
                                   "one pixel of each block, the top-left one"),
                                  (x[..., 1::2, 1::2], "that keeps the bottom-right pixel of each block: keep the top-left")])
        raise ExerciseError("subsample should keep pixel (0, 0) of every 2 x 2 block: rows 0, 2, 4, ... and the same columns")
    back = expect_tensor(subsample_pinv(y), (3, 1, 8, 8), "subsample_pinv(y) for y (3, 1, 4, 4)")
    expect_close(subsample(back), y, "A A^+ y should give y back: put each value of y where subsample took it from")
    projection_x, projection_z = subsample_pinv(subsample(x)), subsample_pinv(subsample(z))
    symmetric = torch.allclose((projection_x * z).sum(), (x * projection_z).sum(), atol=1e-9)
    if not symmetric:
        raise ExerciseError("A A^+ = I holds, but A^+ A is not an orthogonal projection, so I - A^+ A in (10.4) would not "
                            "keep exactly what A cannot see. A^+ changes nothing A does not look at",
                            formula="A^+ y puts y[i, j] at pixel (2i, 2j) and 0 at the other three pixels of the block")
    expect_close(back, subsample_pinv(y), "subsample_pinv should be a fixed function of y")
    expected = torch.zeros_like(x)
    expected[..., ::2, ::2] = y
    expect_close(back, expected, "A^+ y should be the smallest image with A x = y")


# --- 10.2 ------------------------------------------------------------------------------------------

def _posterior(prior_mean, prior_std, noise_std, y):
    weight = prior_std**2 / (prior_std**2 + noise_std**2)  # how much to trust y
    return prior_mean + weight * (y - prior_mean), (weight * noise_std**2) ** 0.5


@exercise("10.2")
def check_denoising_posterior(denoising_posterior) -> None:
    """Exercise 10.2: mean and standard deviation of p(x | y) for x ~ N(m, s^2) and y = x + sigma n."""
    cases = [(0.0, 1.0, 0.5, 0.8), (0.5, 0.15, 0.3, -0.2), (-1.0, 2.0, 2.0, 1.0)]
    for prior_mean, prior_std, noise_std, y in cases:
        answer = denoising_posterior(prior_mean, prior_std, noise_std, y)
        if not isinstance(answer, tuple) or len(answer) != 2:
            raise ExerciseError("return two numbers: (posterior mean, posterior standard deviation)")
        mean = expect_number(answer[0], "the posterior mean")
        std = expect_number(answer[1], "the posterior standard deviation")
        right_mean, right_std = _posterior(prior_mean, prior_std, noise_std, y)
        s2, n2 = prior_std**2, noise_std**2
        if abs(mean - right_mean) > 1e-6:
            if abs(mean - y) < 1e-9:
                raise ExerciseError("that is y itself: the prior pulls the estimate towards its mean m")
            if abs(mean - (n2 * y + s2 * prior_mean) / (s2 + n2)) < 1e-6:
                raise ExerciseError("the weights are swapped: a wide prior (large s) should trust y more")
            raise ExerciseError("multiply the two Gaussians in x: p(x) N(y; x, sigma^2) and read off the mean",
                                formula="mean = m + s^2 / (s^2 + sigma^2) (y - m)")
        if abs(std - right_std) > 1e-6:
            if abs(std - right_std**2) < 1e-6:
                raise ExerciseError("that is the variance: return the standard deviation")
            raise ExerciseError("precisions add: 1 / (posterior variance) = 1 / s^2 + 1 / sigma^2",
                                formula="std = s sigma / sqrt(s^2 + sigma^2)")


# --- 10.3 ------------------------------------------------------------------------------------------

def linear_network(c: float):
    """eps_theta(x_t, k) = c x_t, the network of exercise 10.3."""
    return lambda x_t, k: c * x_t


def _autograd_gradient(x_t, keep, y, alpha_bar, c):
    x = x_t.detach().clone().requires_grad_(True)
    pred_x0 = (x - (1 - alpha_bar) ** 0.5 * c * x) / alpha_bar**0.5  # (2.4)
    ((y - keep * pred_x0) ** 2).sum().backward()
    return x.grad


@exercise("10.3")
def check_dps_gradient(dps_gradient) -> None:
    """Exercise 10.3: grad_{x_t} ||y - A pred_x0(x_t)||^2 for A = a mask and eps_theta = c x_t, by hand."""
    gen = torch.Generator().manual_seed(3)
    x_t = torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    keep = (torch.rand(1, 1, 6, 6, generator=gen) < 0.5).double()
    y = keep * torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    for alpha_bar, c in ((0.5, 0.3), (0.9, -0.7)):
        answer = expect_tensor(dps_gradient(x_t, keep, y, alpha_bar, c), (2, 1, 6, 6), "the gradient")
        right = _autograd_gradient(x_t, keep, y, alpha_bar, c)
        gain = (1 - (1 - alpha_bar) ** 0.5 * c) / alpha_bar**0.5
        reject_known_mistakes(answer, [
            (-right, "the sign is flipped: the gradient points to where the distance grows"),
            (right / gain, "the chain rule needs the factor d pred_x0 / d x_t too, not only d distance / d pred_x0"),
            (-2 * keep * (y - keep * x_t), "pred_x0 is not x_t: differentiate through (2.4) with eps = c x_t"),
            (right / 2, "the derivative of a square brings a factor 2"),
        ])
        expect_close(answer, right, "write pred_x0 = g x_t with one number g, then differentiate the squared distance",
                     formula="g = (1 - sqrt(1 - alpha_bar) c) / sqrt(alpha_bar); gradient = -2 g keep (y - g keep x_t)")
