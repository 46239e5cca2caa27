"""Exercises of chapter 10 (restoration and editing). See diffedu/exercises/__init__.py for how
checkers work.

10.1 builds an operator and its pseudo-inverse (subsampling); 10.2 derives the expected squared
errors of the observation, the posterior mean and a posterior sample for a Gaussian prior (section
1's "twice"); 10.3 derives DPS's gradient (10.6) by hand for a network simple enough for paper.
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
        raise ExerciseError("A A^+ y = y holds, but then (10.5) would also change pixels A does not see: A^+ A is not the "
                            "orthogonal projection (not symmetric). The pseudo-inverse puts nothing where A does not look",
                            formula="A^+ y puts y[i, j] at pixel (2i, 2j) and 0 at the other three pixels of the block")
    expect_close(back, subsample_pinv(y), "subsample_pinv should be a fixed function of y")
    expected = torch.zeros_like(x)
    expected[..., ::2, ::2] = y
    expect_close(back, expected, "A^+ y should be the smallest image with A x = y")


# --- 10.2 ------------------------------------------------------------------------------------------

def _errors(prior_std, noise_std):
    posterior_variance = prior_std**2 * noise_std**2 / (prior_std**2 + noise_std**2)
    return noise_std**2, posterior_variance, 2 * posterior_variance


@exercise("10.2")
def check_restoration_errors(restoration_errors) -> None:
    """Exercise 10.2: E (estimate - x)^2 of y, of the posterior mean and of a posterior sample, for x ~ N(m, s^2)
    and y = x + sigma n."""
    for prior_std, noise_std in ((1.0, 0.5), (0.3, 0.6), (2.0, 2.0)):
        answer = restoration_errors(prior_std, noise_std)
        if not isinstance(answer, tuple) or len(answer) != 3:
            raise ExerciseError("return three numbers: (error of y, error of the posterior mean, error of a posterior sample)")
        of_y, of_mean, of_sample = (expect_number(value, what) for value, what in
                                    zip(answer, ("the error of y", "the error of the mean", "the error of a sample")))
        right = _errors(prior_std, noise_std)
        if abs(of_y - right[0]) > 1e-6:
            raise ExerciseError("y - x is the noise sigma n: its expected square is the noise's variance")
        if abs(of_mean - right[1]) > 1e-6:
            if abs(of_mean - right[1] ** 0.5) < 1e-6:
                raise ExerciseError("that is a standard deviation: the expected squared error is a variance")
            raise ExerciseError("the posterior mean's error is the posterior variance: (10.3) with one blob and A = 1",
                                formula="1 / (1 / s^2 + 1 / sigma^2)")
        if abs(of_sample - right[2]) > 1e-6:
            if abs(of_sample - right[1]) < 1e-6:
                raise ExerciseError("a sample is as far from the mean as the truth is, and independently of it: the two "
                                    "spreads add (section 1)")
            raise ExerciseError("x_sample - x = (x_sample - mean) - (x - mean), two independent draws from the posterior",
                                formula="2 / (1 / s^2 + 1 / sigma^2)")


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
        try:
            with torch.no_grad():  # by hand: autograd records nothing here
                answer = dps_gradient(x_t, keep, y, alpha_bar, c)
        except RuntimeError as error:
            if "grad" in str(error):
                raise ExerciseError("compute the gradient by hand: the checker runs your function without autograd") from None
            raise
        answer = expect_tensor(answer, (2, 1, 6, 6), "the gradient")
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
